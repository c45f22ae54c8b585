//! An invoice or credit note as PDF (A4), with what EU invoices must say (Council Directive
//! 2006/112/EC, art. 226): the date of issue and its sequential number, the seller's and the
//! buyer's names, addresses and VAT ids, the date of supply (the period's last day), each
//! line's description, quantity and amount, the VAT rate and amount, the totals, and the
//! reverse-charge mention where it applies.
//!
//! Written with `pdf-writer` in the standard Helvetica and Courier fonts (nothing embedded),
//! with no clock or random id inside: the same invoice always gives the same bytes.

use pdf_writer::{Content, Finish, Name, Pdf, Rect, Ref, Str};
use rust_decimal::Decimal;

use crate::billing::types::{DocumentKind, Invoice, InvoiceStatus, Party};
use crate::clock::rfc3339;

const WIDTH: f32 = 595.0;
const HEIGHT: f32 = 842.0;
const MARGIN: f32 = 50.0;
const LINE: f32 = 13.0;
/// Invoice lines on a page.
const ROWS_PER_PAGE: usize = 38;

const SANS: Name = Name(b"F1");
const SANS_BOLD: Name = Name(b"F2");
const MONO: Name = Name(b"F3");

/// Text in the standard fonts' WinAnsi encoding (what has no place there becomes `?`).
fn win_ansi(text: &str) -> Vec<u8> {
    text.chars()
        .map(|c| match c as u32 {
            0x20..=0x7E | 0xA0..=0xFF => c as u32 as u8,
            0x20AC => 0x80,
            0x2026 => 0x85,
            0x2018 => 0x91,
            0x2019 => 0x92,
            0x201C => 0x93,
            0x201D => 0x94,
            0x2022 => 0x95,
            0x2013 => 0x96,
            0x2014 => 0x97,
            _ => b'?',
        })
        .collect()
}

/// At most `n` characters, with an ellipsis when cut.
fn fit(text: &str, n: usize) -> String {
    if text.chars().count() <= n {
        return text.to_owned();
    }
    let mut s: String = text.chars().take(n.saturating_sub(1)).collect();
    s.push('…');
    s
}

struct Page {
    content: Content,
    y: f32,
}

impl Page {
    fn new() -> Page {
        Page {
            content: Content::new(),
            y: HEIGHT - MARGIN,
        }
    }

    fn text(&mut self, font: Name, size: f32, x: f32, y: f32, text: &str) {
        self.content
            .begin_text()
            .set_font(font, size)
            .next_line(x, y)
            .show(Str(&win_ansi(text)))
            .end_text();
    }

    /// Monospaced text ending at `right`.
    fn right(&mut self, size: f32, right: f32, y: f32, text: &str) {
        let width = text.chars().count() as f32 * 0.6 * size;
        self.text(MONO, size, right - width, y, text);
    }

    fn rule(&mut self, y: f32) {
        self.content
            .set_line_width(0.5)
            .move_to(MARGIN, y)
            .line_to(WIDTH - MARGIN, y)
            .stroke();
    }
}

fn party(page: &mut Page, x: f32, y: f32, title: &str, p: &Party) {
    page.text(SANS_BOLD, 9.0, x, y, title);
    let mut yy = y - LINE;
    page.text(SANS, 10.0, x, yy, &p.name);
    for line in &p.address {
        yy -= LINE;
        page.text(SANS, 9.0, x, yy, line);
    }
    yy -= LINE;
    page.text(SANS, 9.0, x, yy, &format!("Country: {}", p.country));
    if let Some(v) = &p.vat_id {
        yy -= LINE;
        page.text(SANS, 9.0, x, yy, &format!("VAT id: {v}"));
    }
}

fn date(ms: Option<i64>) -> String {
    ms.map(|m| rfc3339(m)[..10].to_owned())
        .unwrap_or_else(|| "-".into())
}

fn money(d: Decimal, currency: &str) -> String {
    format!("{:.2} {currency}", d.round_dp(2))
}

/// The document as PDF bytes.
pub fn render(inv: &Invoice) -> Vec<u8> {
    let c = inv.totals.currency.code();
    let title = match (inv.kind, &inv.number) {
        (_, None) => "DRAFT — not a valid invoice".to_owned(),
        (DocumentKind::Invoice, Some(n)) if inv.self_billed => format!("Self-billed invoice {n}"),
        (DocumentKind::Invoice, Some(n)) => format!("Invoice {n}"),
        (DocumentKind::CreditNote, Some(n)) => format!("Credit note {n}"),
    };
    let mut pages: Vec<Page> = Vec::new();
    let mut page = Page::new();
    page.text(SANS_BOLD, 18.0, MARGIN, page.y, &title);
    page.y -= 2.0 * LINE;
    let facts = [
        ("Date of issue", date(inv.issued_at_ms)),
        ("Date of supply", inv.tax_date.clone()),
        ("Period", inv.period.clone()),
        ("Due", date(inv.due_at_ms)),
        ("Status", inv.status.as_str().to_owned()),
    ];
    for (k, v) in facts {
        page.text(SANS, 9.0, MARGIN, page.y, k);
        page.text(SANS, 9.0, MARGIN + 90.0, page.y, &v);
        page.y -= LINE;
    }
    if let Some(of) = &inv.corrects {
        page.text(SANS, 9.0, MARGIN, page.y, &format!("Corrects invoice {of}"));
        page.y -= LINE;
    }
    page.y -= LINE;
    let top = page.y;
    party(&mut page, MARGIN, top, "Seller", &inv.seller);
    party(&mut page, WIDTH / 2.0, top, "Buyer", &inv.buyer);
    page.y = top - 7.0 * LINE;
    let header = |page: &mut Page| {
        page.text(SANS_BOLD, 9.0, MARGIN, page.y, "Description");
        page.text(SANS_BOLD, 9.0, 390.0, page.y, "Quantity");
        page.text(SANS_BOLD, 9.0, WIDTH - MARGIN - 60.0, page.y, "Amount");
        page.y -= 4.0;
        let y = page.y;
        page.rule(y);
        page.y -= LINE;
    };
    header(&mut page);
    for (n, line) in inv.lines.iter().enumerate() {
        if n > 0 && n % ROWS_PER_PAGE == 0 {
            pages.push(std::mem::replace(&mut page, Page::new()));
            header(&mut page);
        }
        page.text(SANS, 8.0, MARGIN, page.y, &fit(&line.description, 78));
        page.text(SANS, 8.0, 390.0, page.y, &line.quantity);
        page.right(8.0, WIDTH - MARGIN, page.y, &money(line.amount, c));
        page.y -= LINE;
    }
    let y = page.y + LINE - 4.0;
    page.rule(y);
    page.y -= LINE / 2.0;
    let t = &inv.totals;
    let vat_label = match &t.vat_country {
        Some(country) => format!("VAT {} % ({country})", t.vat_rate.normalize()),
        None => format!("VAT {} %", t.vat_rate.normalize()),
    };
    let mut totals = vec![
        ("Net".to_owned(), t.net),
        (vat_label, t.vat),
        ("Total".to_owned(), t.total),
    ];
    if !t.prepaid_applied.is_zero() {
        totals.push(("Paid from prepaid balance".to_owned(), -t.prepaid_applied));
    }
    totals.push(("Amount due".to_owned(), t.amount_due));
    for (k, v) in totals {
        page.text(SANS_BOLD, 9.0, 330.0, page.y, &k);
        page.right(9.0, WIDTH - MARGIN, page.y, &money(v, c));
        page.y -= LINE;
    }
    page.y -= LINE;
    if let Some(m) = &t.mention {
        page.text(SANS_BOLD, 8.0, MARGIN, page.y, &fit(m, 110));
        page.y -= LINE;
    }
    if inv.self_billed {
        page.text(
            SANS_BOLD,
            8.0,
            MARGIN,
            page.y,
            &fit(
                &format!(
                    "Self-billing: issued by {} in the name and on behalf of {}, who accepted self-billing in its partner agreement. {} pays it by bank transfer.",
                    inv.buyer.name, inv.seller.name, inv.buyer.name
                ),
                110,
            ),
        );
        page.y -= LINE;
    } else if inv.status == InvoiceStatus::Open {
        page.text(
            SANS,
            8.0,
            MARGIN,
            page.y,
            &format!(
                "Pay by card in the console, or by bank transfer to IBAN EE38 2200 2210 2014 5685 (SWEDEEX2) with the reference {}.",
                inv.number.as_deref().unwrap_or(&inv.id)
            ),
        );
        page.y -= LINE;
    }
    for p in &inv.payments {
        page.text(
            SANS,
            8.0,
            MARGIN,
            page.y,
            &format!(
                "Paid {} on {} ({} {})",
                money(p.amount, c),
                date(Some(p.at_ms)),
                p.method,
                p.reference
            ),
        );
        page.y -= LINE;
    }
    page.text(
        SANS,
        7.0,
        MARGIN,
        MARGIN - 20.0,
        "VMCloud OÜ · registry code 16123456 · Narva mnt 5, 10117 Tallinn, Estonia · billing@vmcloud.example",
    );
    pages.push(page);

    let mut pdf = Pdf::new();
    let catalog = Ref::new(1);
    let tree = Ref::new(2);
    let fonts = [
        (SANS, Ref::new(3), b"Helvetica".as_slice()),
        (SANS_BOLD, Ref::new(4), b"Helvetica-Bold".as_slice()),
        (MONO, Ref::new(5), b"Courier".as_slice()),
    ];
    let first_page = 10;
    let page_ids: Vec<Ref> = (0..pages.len())
        .map(|k| Ref::new(first_page + 2 * k as i32))
        .collect();
    pdf.catalog(catalog).pages(tree);
    pdf.pages(tree)
        .kids(page_ids.iter().copied())
        .count(pages.len() as i32);
    for (font_name, id, base) in fonts {
        let _ = font_name;
        pdf.type1_font(id)
            .base_font(Name(base))
            .encoding_predefined(Name(b"WinAnsiEncoding"));
    }
    for (k, p) in pages.into_iter().enumerate() {
        let id = page_ids[k];
        let content_id = Ref::new(id.get() + 1);
        let mut pg = pdf.page(id);
        pg.media_box(Rect::new(0.0, 0.0, WIDTH, HEIGHT));
        pg.parent(tree);
        pg.contents(content_id);
        {
            let mut resources = pg.resources();
            let mut f = resources.fonts();
            for (name, fid, _) in fonts {
                f.pair(name, fid);
            }
        }
        pg.finish();
        pdf.stream(content_id, &p.content.finish());
    }
    pdf.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_is_written_in_the_standard_fonts_encoding() {
        assert_eq!(win_ansi("OÜ 12,00 €"), b"O\xdc 12,00 \x80".to_vec());
        assert_eq!(win_ansi("a→b"), b"a?b".to_vec());
        assert_eq!(fit("abcdef", 4), "abc…");
    }
}
