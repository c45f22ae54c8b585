//! Checks of what customers type about themselves: names, email addresses, countries and EU
//! VAT ids. Pure; the API calls them for a clear answer, `apply` again before storing.

/// What was wrong, in words a customer can act on.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct Invalid(pub String);

/// A display name: trimmed, 1 to 100 characters, no control characters.
pub fn name(what: &str, s: &str) -> Result<String, Invalid> {
    let t = s.trim();
    if t.is_empty() || t.chars().count() > 100 || t.chars().any(char::is_control) {
        return Err(Invalid(format!(
            "{what} must be 1 to 100 characters without control characters"
        )));
    }
    Ok(t.to_owned())
}

/// An email address, lower-cased: one `@`, a local part and a domain with a dot, no spaces.
pub fn email(s: &str) -> Result<String, Invalid> {
    let e = s.trim().to_lowercase();
    let ok = e.len() <= 254
        && !e.chars().any(|c| c.is_whitespace() || c.is_control())
        && e.split_once('@').is_some_and(|(local, domain)| {
            !local.is_empty()
                && !domain.contains('@')
                && domain.contains('.')
                && !domain.starts_with('.')
                && !domain.ends_with('.')
                && !domain.contains("..")
        });
    if ok {
        Ok(e)
    } else {
        Err(Invalid(format!(
            "`{}` is not an email address (expected name@example.com)",
            s.trim()
        )))
    }
}

/// The EU's member states (ISO 3166-1 alpha-2).
pub const EU_COUNTRIES: [&str; 27] = [
    "AT", "BE", "BG", "CY", "CZ", "DE", "DK", "EE", "ES", "FI", "FR", "GR", "HR", "HU", "IE", "IT",
    "LT", "LU", "LV", "MT", "NL", "PL", "PT", "RO", "SE", "SI", "SK",
];

/// Validated organisation details.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrgDetails {
    pub name: String,
    pub country: String,
    pub vat_id: Option<String>,
}

/// Checks an organisation's name, billing country and (businesses in the EU only) VAT id.
pub fn org_details(
    org_name: &str,
    kind: crate::tenancy::types::OrgKind,
    country: &str,
    vat_id: &str,
) -> Result<OrgDetails, Invalid> {
    let name = name("the organisation's name", org_name)?;
    let country = country.trim().to_ascii_uppercase();
    if country.len() != 2 || !country.bytes().all(|b| b.is_ascii_uppercase()) {
        return Err(Invalid(format!(
            "billing country `{country}` is not an ISO 3166-1 alpha-2 code (FR, DE, US, …)"
        )));
    }
    let vat: String = vat_id
        .chars()
        .filter(|c| !c.is_whitespace() && *c != '-' && *c != '.')
        .collect::<String>()
        .to_ascii_uppercase();
    let vat_id = if vat.is_empty() {
        None
    } else {
        if kind != crate::tenancy::types::OrgKind::Company {
            return Err(Invalid(
                "only a company has a VAT id; leave it empty for a person or a household".into(),
            ));
        }
        eu_vat_id(&country, &vat)?;
        Some(vat)
    };
    Ok(OrgDetails {
        name,
        country,
        vat_id,
    })
}

/// Checks the format of an EU VAT id for `country` (its prefix is the country code, `EL` for
/// Greece). The format only: whether it is registered is VIES's answer, asked later.
pub fn eu_vat_id(country: &str, vat: &str) -> Result<(), Invalid> {
    let prefix = if country == "GR" { "EL" } else { country };
    let Some(patterns) = vat_patterns(prefix) else {
        return Err(Invalid(format!(
            "a VAT id is only kept for businesses in the EU; {country} is not an EU country"
        )));
    };
    let body = vat.strip_prefix(prefix).ok_or_else(|| {
        Invalid(format!(
            "VAT id `{vat}` must start with {prefix} for a business in {country}"
        ))
    })?;
    if patterns.iter().any(|p| matches_pattern(p, body)) {
        Ok(())
    } else {
        Err(Invalid(format!(
            "VAT id `{vat}` does not have the format of {country}: {prefix} then {}",
            patterns
                .iter()
                .map(|p| describe(p))
                .collect::<Vec<_>>()
                .join(", or ")
        )))
    }
}

/// Per prefix, the formats after it: `9` a digit, `A` a letter, `X` a letter or digit,
/// another character itself.
fn vat_patterns(prefix: &str) -> Option<&'static [&'static str]> {
    Some(match prefix {
        "AT" => &["U99999999"],
        "BE" => &["9999999999"],
        "BG" => &["999999999", "9999999999"],
        "CY" => &["99999999A"],
        "CZ" => &["99999999", "999999999", "9999999999"],
        "DE" => &["999999999"],
        "DK" => &["99999999"],
        "EE" => &["999999999"],
        "EL" => &["999999999"],
        "ES" => &["X9999999X"],
        "FI" => &["99999999"],
        "FR" => &["XX999999999"],
        "HR" => &["99999999999"],
        "HU" => &["99999999"],
        "IE" => &["9999999A", "9999999AA", "9A99999A"],
        "IT" => &["99999999999"],
        "LT" => &["999999999", "999999999999"],
        "LU" => &["99999999"],
        "LV" => &["99999999999"],
        "MT" => &["99999999"],
        "NL" => &["999999999B99"],
        "PL" => &["9999999999"],
        "PT" => &["999999999"],
        "RO" => &[
            "99",
            "999",
            "9999",
            "99999",
            "999999",
            "9999999",
            "99999999",
            "999999999",
            "9999999999",
        ],
        "SE" => &["999999999999"],
        "SI" => &["99999999"],
        "SK" => &["9999999999"],
        _ => return None,
    })
}

fn matches_pattern(pattern: &str, s: &str) -> bool {
    pattern.len() == s.len()
        && pattern.bytes().zip(s.bytes()).all(|(p, c)| match p {
            b'9' => c.is_ascii_digit(),
            b'A' => c.is_ascii_uppercase(),
            b'X' => c.is_ascii_alphanumeric(),
            other => other == c,
        })
}

fn describe(pattern: &str) -> String {
    let digits = pattern.bytes().filter(|b| *b == b'9').count();
    if digits == pattern.len() {
        format!("{digits} digits")
    } else {
        format!("`{}` (9 a digit, A a letter, X either)", pattern)
    }
}

/// A postal address: up to 5 lines of at most 100 characters each, no control characters
/// (empty: none).
pub fn address(text: &str) -> Result<Vec<String>, Invalid> {
    let lines: Vec<String> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(str::to_owned)
        .collect();
    if lines.len() > 5 {
        return Err(Invalid(format!(
            "the billing address has {} lines; write it in 5 at most",
            lines.len()
        )));
    }
    if let Some(l) = lines
        .iter()
        .find(|l| l.chars().count() > 100 || l.chars().any(char::is_control))
    {
        return Err(Invalid(format!(
            "billing address line {l:?} is too long (100 characters at most) or holds control characters"
        )));
    }
    Ok(lines)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tenancy::types::OrgKind;

    #[test]
    fn vat_ids_per_country() {
        let cases = [
            ("FR", "FR40303265045", true),
            ("FR", "FR 40 303 265 045", true),
            ("FR", "FR4030326504", false),
            ("DE", "DE136695976", true),
            ("DE", "FR136695976", false),
            ("GR", "EL094259216", true),
            ("GR", "GR094259216", false),
            ("NL", "NL004495445B01", true),
            ("NL", "NL004495445C01", false),
            ("AT", "ATU13585627", true),
            ("ES", "ESA28015865", true),
            ("IE", "IE6388047V", true),
            ("EE", "EE100931558", true),
            ("BE", "BE0403170701", true),
            ("US", "US123456789", false),
        ];
        for (country, vat, ok) in cases {
            let r = org_details("Acme", OrgKind::Company, country, vat);
            assert_eq!(r.is_ok(), ok, "{country} {vat}: {r:?}");
        }
        let err = org_details("Acme", OrgKind::Company, "DE", "DE12").unwrap_err();
        assert!(err.0.contains("9 digits"), "{err}");
        assert!(org_details("Ann", OrgKind::Person, "FR", "FR40303265045").is_err());
        assert_eq!(
            org_details(" Acme ", OrgKind::Company, "fr", "").unwrap(),
            OrgDetails {
                name: "Acme".into(),
                country: "FR".into(),
                vat_id: None
            }
        );
        assert!(org_details("Acme", OrgKind::Company, "France", "").is_err());
    }

    #[test]
    fn emails() {
        assert_eq!(email(" Ann@Example.COM ").unwrap(), "ann@example.com");
        for bad in [
            "",
            "ann",
            "ann@",
            "@example.com",
            "ann@example",
            "a b@example.com",
            "ann@@x.com",
            "ann@x..com",
        ] {
            assert!(email(bad).is_err(), "{bad}");
        }
    }
}
