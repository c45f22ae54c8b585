//! The console as a customer uses it, in a real browser: headless Chromium driven over
//! WebDriver (Debian's `chromium` and `chromium-driver`) against a running `vmcloud dev`.
//! Sign up → read the verification mail → verify → log in → turn on TOTP → log out and in
//! again with a code → create a project and an API key → create an instance and watch it
//! become `running` on the page (server-sent events) → one made with the key from the CLI
//! shows up too → delete it after the confirmation; a user of another organisation sees none
//! of it. A screenshot of each step is saved (the path is printed).

use std::os::unix::process::CommandExt as _;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::json;
use totp_rs::{Algorithm, Secret, TOTP};

use super::Fixture;
use super::customers::{Api, PASSWORD, customer};

const TEST: &str = "dev::browser::the_console_from_sign_up_to_a_running_instance";

/// chromedriver on a free port, killed when dropped.
pub(super) struct Driver {
    child: Child,
    url: String,
}

impl Drop for Driver {
    fn drop(&mut self) {
        // chromedriver and the Chromium it started share a process group of their own: a test
        // that fails before closing its session leaves no browser behind.
        let group = nix::unistd::Pid::from_raw(-(self.child.id() as i32));
        let _ = nix::sys::signal::kill(group, nix::sys::signal::Signal::SIGKILL);
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub(super) fn find_program(names: &[&str]) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    names.iter().find_map(|name| {
        std::env::split_paths(&path)
            .map(|dir| dir.join(name))
            .find(|p| p.is_file())
    })
}

pub(super) async fn start_driver(chromedriver: &PathBuf) -> Driver {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let child = Command::new(chromedriver)
        .process_group(0)
        .arg(format!("--port={port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("chromedriver starts");
    let url = format!("http://127.0.0.1:{port}");
    let deadline = Instant::now() + Duration::from_secs(20);
    while reqwest::get(format!("{url}/status")).await.is_err() {
        assert!(
            Instant::now() < deadline,
            "chromedriver did not answer in 20 s"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Driver { child, url }
}

pub(super) async fn browser(driver: &Driver, chromium: &PathBuf) -> Client {
    let mut caps = serde_json::Map::new();
    caps.insert(
        "goog:chromeOptions".to_owned(),
        json!({
            "binary": chromium,
            "args": ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                     "--window-size=1280,1000", "--lang=en-GB",
                     // Partners' portals on `*.localhost` names, whatever the resolver says.
                     "--host-resolver-rules=MAP *.localhost 127.0.0.1"],
        }),
    );
    let connector = hyper_util::client::legacy::connect::HttpConnector::new();
    ClientBuilder::new(connector)
        .capabilities(caps)
        .connect(&driver.url)
        .await
        .expect("a Chromium session")
}

/// Saves numbered screenshots of the steps.
pub(super) struct Shots {
    dir: PathBuf,
    n: u32,
}

impl Shots {
    /// Screenshots go to `$CARGO_TARGET_TMPDIR/<name>/`.
    pub(super) fn new(name: &str) -> Shots {
        let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(name);
        // Only this run's steps (and a `failed.png`, if it fails).
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        Shots { dir, n: 0 }
    }

    pub(super) async fn take(&mut self, c: &Client, step: &str) {
        self.n += 1;
        let png = c.screenshot().await.unwrap();
        let path = self.dir.join(format!("{:02}-{step}.png", self.n));
        std::fs::write(&path, png).unwrap();
        eprintln!("screenshot: {}", path.display());
    }
}

pub(super) async fn fill(c: &Client, css: &str, text: &str) {
    let el = c.find(Locator::Css(css)).await.unwrap();
    el.clear().await.unwrap();
    el.send_keys(text).await.unwrap();
}

/// Whether `e` says the element was replaced (a live part of the page re-rendered it).
fn stale(e: &fantoccini::error::CmdError) -> bool {
    matches!(e, fantoccini::error::CmdError::Standard(e)
        if e.error == fantoccini::error::ErrorStatus::StaleElementReference)
}

/// Clicks the first element `css` finds, finding it again when a live part of the page
/// replaced it meanwhile.
pub(super) async fn click(c: &Client, css: &str) {
    let mut tries = 0;
    loop {
        let el = c.find(Locator::Css(css)).await.unwrap();
        match el.click().await {
            Ok(()) => return,
            Err(e) if stale(&e) && tries < 5 => tries += 1,
            Err(e) => panic!("clicking `{css}`: {e}"),
        }
    }
}

/// The text of the first element `css` finds. A live part of the page (a server-sent event)
/// may replace the element between finding and reading it: then it is found again.
pub(super) async fn text(c: &Client, css: &str) -> String {
    let mut tries = 0;
    loop {
        let el = c.find(Locator::Css(css)).await.unwrap();
        match el.text().await {
            Ok(t) => return t,
            Err(e) if stale(&e) && tries < 5 => tries += 1,
            Err(e) => panic!("the text of `{css}`: {e}"),
        }
    }
}

/// Waits for `css` on the page; when it does not come, saves `browser-failed.png` (in
/// `$CARGO_TARGET_TMPDIR`) and shows the page.
pub(super) async fn wait_for(c: &Client, css: &str, limit: Duration) {
    if let Err(e) = c.wait().at_most(limit).for_element(Locator::Css(css)).await {
        let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR"));
        if let Ok(png) = c.screenshot().await {
            let _ = std::fs::write(dir.join("browser-failed.png"), png);
        }
        let url = c
            .current_url()
            .await
            .map(|u| u.to_string())
            .unwrap_or_default();
        let body = text(c, "body").await;
        panic!("no `{css}` on {url} within {limit:?} ({e}); the page says:\n{body}");
    }
}

pub(super) async fn path(c: &Client) -> String {
    c.current_url().await.unwrap().path().to_owned()
}

/// The verification link (a page address) mailed to `email`.
fn mailed_page_link(fx: &Fixture, email: &str) -> String {
    let dir = fx.fleet.data_dir.join("mail");
    for entry in std::fs::read_dir(&dir).unwrap() {
        let mail = std::fs::read_to_string(entry.unwrap().path()).unwrap();
        if mail.contains(&format!("To: {email}"))
            && let Some(link) = mail.lines().map(str::trim).find(|l| l.contains("/verify?"))
        {
            return link.to_owned();
        }
    }
    panic!("no verification mail to {email} in {}", dir.display())
}

fn now_s() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

#[tokio::test]
async fn the_console_from_sign_up_to_a_running_instance() {
    let (Some(chromium), Some(chromedriver)) = (
        find_program(&["chromium", "chromium-browser", "google-chrome"]),
        find_program(&["chromedriver"]),
    ) else {
        vmcloud_proto::testing::skip(
            TEST,
            "no chromium and chromedriver on PATH (scripts/test installs Debian's chromium and chromium-driver as root)",
        );
        return;
    };
    let fx = Fixture::start();
    let base = fx.fleet.api.clone();
    let driver = start_driver(&chromedriver).await;
    let c = browser(&driver, &chromium).await;
    let mut shots = Shots::new("browser");
    let email = "ada@example.com";

    // Sign up.
    c.goto(&format!("{base}/signup")).await.unwrap();
    fill(&c, "#email", email).await;
    fill(&c, "#password", PASSWORD).await;
    fill(&c, "#org_name", "Analytical Engines").await;
    fill(&c, "#country", "FR").await;
    shots.take(&c, "sign-up").await;
    click(&c, "#signup").await;
    wait_for(&c, "#check-mail", Duration::from_secs(10)).await;
    shots.take(&c, "check-your-mail").await;

    // The mailed link verifies, and leads to the log-in page.
    let link = mailed_page_link(&fx, email);
    assert!(link.starts_with(&base), "the mail links elsewhere: {link}");
    c.goto(&link).await.unwrap();
    wait_for(&c, "p.notice", Duration::from_secs(10)).await;
    assert_eq!(path(&c).await, "/login");
    shots.take(&c, "verified").await;

    // Log in.
    fill(&c, "#email", email).await;
    fill(&c, "#password", PASSWORD).await;
    click(&c, "#login").await;
    wait_for(&c, "#projects", Duration::from_secs(10)).await;
    assert_eq!(path(&c).await, "/console");
    shots.take(&c, "console").await;

    // Turn on TOTP: the QR page's secret, read by an authenticator (totp-rs here).
    c.goto(&format!("{base}/console/account")).await.unwrap();
    click(&c, "#totp-on").await;
    wait_for(&c, "#qr", Duration::from_secs(10)).await;
    shots.take(&c, "totp-qr-code").await;
    let secret = text(&c, "#totp-secret").await;
    let app = TOTP::new_unchecked(
        Algorithm::SHA1,
        6,
        1,
        30,
        Secret::Encoded(secret).to_bytes().unwrap(),
        None,
        String::new(),
    );
    let now = now_s();
    fill(&c, "#totp-code", &app.generate(now)).await;
    click(&c, "#totp-confirm").await;
    wait_for(&c, "#recovery-codes", Duration::from_secs(10)).await;
    shots.take(&c, "recovery-codes").await;
    c.goto(&format!("{base}/console/account")).await.unwrap();
    let on = c
        .find(Locator::Css("#totp-status"))
        .await
        .unwrap()
        .attr("data-on")
        .await
        .unwrap();
    assert_eq!(on.as_deref(), Some("true"));

    // Log out, and in again: now the code is needed.
    click(&c, "#logout").await;
    wait_for(&c, "#login", Duration::from_secs(10)).await;
    fill(&c, "#email", email).await;
    fill(&c, "#password", PASSWORD).await;
    click(&c, "#login").await;
    // The answer to this log-in (the page before it may show the code field too).
    wait_for(&c, "#totp-needed", Duration::from_secs(10)).await;
    assert!(
        text(&c, "#totp-needed").await.contains("6-digit code"),
        "the log-in page does not ask for the code"
    );
    shots.take(&c, "log-in-asks-for-the-code").await;
    fill(&c, "#password", PASSWORD).await;
    // The confirming code's step is spent; the next step's code is accepted (one step of skew).
    fill(&c, "#code", &app.generate(now + 30)).await;
    click(&c, "#login").await;
    wait_for(&c, "#projects", Duration::from_secs(10)).await;

    // The account page lists this browser's session, with the code it started with.
    c.goto(&format!("{base}/console/account")).await.unwrap();
    let sessions = text(&c, "#sessions").await;
    assert!(
        sessions.contains("this browser") && sessions.contains("with a code"),
        "{sessions}"
    );
    shots.take(&c, "account-sessions").await;
    c.goto(&format!("{base}/console")).await.unwrap();

    // A project and an API key.
    fill(&c, "#project-name", "web").await;
    click(&c, "#create-project").await;
    wait_for(&c, "#instances", Duration::from_secs(10)).await;
    let project_page = path(&c).await;
    let project = project_page.rsplit('/').next().unwrap().to_owned();
    assert!(project.starts_with("prj-"), "{project_page}");
    shots.take(&c, "project").await;
    click(&c, "#keys-link").await;
    fill(&c, "#key-name", "ci").await;
    click(&c, "#create-key").await;
    wait_for(&c, "#new-key", Duration::from_secs(10)).await;
    let key = text(&c, "#new-key").await;
    assert!(key.starts_with("vmc_"), "{key}");
    // The keys' rate limit: the default, per hour.
    let limit = text(&c, "#rate-limit").await;
    assert!(
        limit.contains("requests an hour") && limit.contains("the default"),
        "{limit}"
    );
    shots.take(&c, "api-key-shown-once").await;

    // A webhook endpoint: its secret shown once, a test event delivered to a receiver.
    let receiver = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let hook_url = format!("http://{}/hooks", receiver.local_addr().unwrap());
    let received = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let count = received.clone();
    tokio::spawn(async move {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        while let Ok((mut conn, _)) = receiver.accept().await {
            let count = count.clone();
            tokio::spawn(async move {
                let mut buf = vec![0u8; 65536];
                let mut seen = Vec::new();
                // One request per connection is enough here: read the headers and body.
                while let Ok(n) = conn.read(&mut buf).await {
                    if n == 0 {
                        return;
                    }
                    seen.extend_from_slice(&buf[..n]);
                    let text = String::from_utf8_lossy(&seen);
                    if let Some(end) = text.find("\r\n\r\n") {
                        let length = text[..end]
                            .lines()
                            .find_map(|l| {
                                l.to_ascii_lowercase()
                                    .strip_prefix("content-length:")
                                    .map(|v| v.trim().parse::<usize>().unwrap_or(0))
                            })
                            .unwrap_or(0);
                        if seen.len() >= end + 4 + length {
                            count.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                            let _ = conn
                                .write_all(b"HTTP/1.1 204 No Content\r\nconnection: close\r\n\r\n")
                                .await;
                            return;
                        }
                    }
                }
            });
        }
    });
    c.goto(&format!("{base}{project_page}")).await.unwrap();
    click(&c, "#webhooks-link").await;
    wait_for(&c, "#endpoint-url", Duration::from_secs(10)).await;
    fill(&c, "#endpoint-url", &hook_url).await;
    click(&c, "#create-endpoint").await;
    wait_for(&c, "#new-secret", Duration::from_secs(10)).await;
    assert!(text(&c, "#new-secret").await.starts_with("whsec_"));
    shots.take(&c, "webhook-secret-shown-once").await;
    c.find(Locator::LinkText(&hook_url))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    wait_for(&c, "#send-test", Duration::from_secs(10)).await;
    let endpoint_page = path(&c).await;
    click(&c, "#send-test").await;
    wait_for(&c, "#test-result", Duration::from_secs(20)).await;
    let tested = text(&c, "#test-result").await;
    assert!(
        tested.contains("delivered") && tested.contains("204"),
        "{tested}"
    );
    shots.take(&c, "webhook-test-event").await;

    // The project's quotas: used / limit per region; asking for more.
    c.goto(&format!("{base}{project_page}")).await.unwrap();
    click(&c, "#quotas-link").await;
    wait_for(&c, "#quotas tbody tr", Duration::from_secs(10)).await;
    assert!(text(&c, "#quotas").await.contains("par"));
    click(&c, "#quota-region option[value='par']").await;
    fill(&c, "#quota-vcpus", "64").await;
    fill(&c, "#quota-reason", "a build farm").await;
    click(&c, "#ask-quota").await;
    wait_for(&c, "p.notice", Duration::from_secs(10)).await;
    let asked = text(&c, "#quota-requests").await;
    assert!(
        asked.contains("a build farm") && asked.contains("open"),
        "{asked}"
    );
    shots.take(&c, "quotas").await;

    // The organisation's audit trail shows what was just done, by whom.
    c.goto(&format!("{base}/console")).await.unwrap();
    c.find(Locator::LinkText("Analytical Engines"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    click(&c, "#audit-link").await;
    wait_for(&c, "#audit tbody tr", Duration::from_secs(10)).await;
    let trail = text(&c, "#audit").await;
    assert!(
        trail.contains("request_quota") && trail.contains("add_api_key"),
        "{trail}"
    );
    shots.take(&c, "audit-trail").await;

    // An instance from the console: running on the page, live.
    c.goto(&format!("{base}{project_page}")).await.unwrap();
    fill(&c, "#instance-name", "web-1").await;
    click(&c, "#flavor option[value='vps-s']").await;
    click(&c, "#image option[value='debian-12']").await;
    click(&c, "#region option[value='par']").await;
    shots.take(&c, "new-instance").await;
    click(&c, "#create-instance").await;
    wait_for(&c, "#instances tbody tr[data-id]", Duration::from_secs(10)).await;
    wait_for(
        &c,
        "#instances [data-state='running']",
        Duration::from_secs(60),
    )
    .await;
    shots.take(&c, "instance-running").await;

    // Its events reached the endpoint; one is sent again from the endpoint's page.
    c.goto(&format!("{base}{endpoint_page}")).await.unwrap();
    wait_for(&c, "#deliveries button", Duration::from_secs(30)).await;
    let before = received.load(std::sync::atomic::Ordering::SeqCst);
    click(&c, "#deliveries button").await;
    wait_for(&c, "p.notice", Duration::from_secs(10)).await;
    let deadline = Instant::now() + Duration::from_secs(30);
    while received.load(std::sync::atomic::Ordering::SeqCst) == before {
        assert!(Instant::now() < deadline, "the resent event never arrived");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    c.refresh().await.unwrap();
    wait_for(&c, "#deliveries tbody tr", Duration::from_secs(10)).await;
    shots.take(&c, "webhook-deliveries").await;
    c.goto(&format!("{base}{endpoint_page}?lang=fr"))
        .await
        .unwrap();
    assert!(text(&c, "#deliveries").await.contains("livré"));
    shots.take(&c, "webhook-deliveries-in-french").await;
    c.goto(&format!("{base}{project_page}/quotas"))
        .await
        .unwrap();
    shots.take(&c, "quotas-in-french").await;
    c.goto(&format!("{base}{project_page}/keys")).await.unwrap();
    assert!(text(&c, "#rate-limit").await.contains("requêtes par heure"));
    shots.take(&c, "keys-rate-limit-in-french").await;
    c.goto(&format!("{base}{project_page}?lang=en"))
        .await
        .unwrap();

    // The instance's private address on the project page; the project's networks, a new one,
    // a floating IP assigned to the instance; a firewall attached to it.
    wait_for(&c, "#instances td.private-ip", Duration::from_secs(10)).await;
    assert!(
        text(&c, "#instances").await.contains("10.0.0."),
        "no private address on the page"
    );
    click(&c, "#networks-link").await;
    wait_for(&c, "#networks tbody tr", Duration::from_secs(10)).await;
    let nets = text(&c, "#networks").await;
    assert!(
        nets.contains("10.0.0.0/24") && nets.contains("default"),
        "{nets}"
    );
    fill(&c, "#network-name", "backend").await;
    fill(&c, "#network-subnet", "10.20.0.0/24").await;
    click(&c, "#network-region option[value='par']").await;
    click(&c, "#create-network").await;
    wait_for(&c, "p.notice", Duration::from_secs(10)).await;
    assert!(text(&c, "#networks").await.contains("10.20.0.0/24"));
    click(&c, "#fip-region option[value='par']").await;
    click(&c, "#take-fip").await;
    wait_for(&c, "#floating-ips tbody tr", Duration::from_secs(10)).await;
    assert!(text(&c, "#floating-ips").await.contains("203.0.113."));
    click(&c, "#floating-ips form[action$='/assign'] button").await;
    wait_for(
        &c,
        "#floating-ips form[action$='/unassign']",
        Duration::from_secs(10),
    )
    .await;
    assert!(text(&c, "#floating-ips").await.contains("i-"));
    shots.take(&c, "networks-and-floating-ips").await;
    c.goto(&format!("{base}{project_page}/networks?lang=fr"))
        .await
        .unwrap();
    assert_eq!(text(&c, "h1").await, "Réseaux");
    shots.take(&c, "networks-in-french").await;
    c.goto(&format!("{base}{project_page}/firewalls?lang=en"))
        .await
        .unwrap();
    fill(&c, "#firewall-name", "ssh").await;
    fill(
        &c,
        "#firewall-rules",
        "in tcp 22 203.0.113.0/24\nin tcp 443",
    )
    .await;
    click(&c, "#create-firewall").await;
    wait_for(&c, "#save-rules", Duration::from_secs(10)).await;
    click(&c, "#attach").await;
    wait_for(&c, "#attached tbody tr", Duration::from_secs(10)).await;
    let rules = c
        .find(Locator::Css("#firewall-rules"))
        .await
        .unwrap()
        .prop("value")
        .await
        .unwrap()
        .unwrap_or_default();
    assert!(
        rules.contains("in tcp 22 203.0.113.0/24") && rules.contains("in tcp 443"),
        "{rules}"
    );
    shots.take(&c, "firewall-attached").await;
    // A bad rule: the page says which line and why, nothing changes.
    fill(&c, "#firewall-rules", "in tcp 22\nin tcp 99999").await;
    click(&c, "#save-rules").await;
    wait_for(&c, "p.problem", Duration::from_secs(10)).await;
    let why = text(&c, "p.problem").await;
    assert!(why.contains("99999"), "{why}");
    c.goto(&format!("{base}{project_page}")).await.unwrap();

    // One from the CLI with the new key appears on the open page without a reload.
    let out = fx.fleet.cli(&[
        "instance",
        "create",
        "--flavor",
        "vps-s",
        "--image",
        "debian-12",
        "--region",
        "par",
        "--name",
        "from-cli",
        "--token",
        &key,
        "-o",
        "json",
    ]);
    assert!(
        out.status.success(),
        "vmcloud instance create with the console's key: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let made: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let cli_id = made["id"].as_str().unwrap().to_owned();
    wait_for(
        &c,
        &format!("#instances tr[data-id='{cli_id}']"),
        Duration::from_secs(20),
    )
    .await;
    shots.take(&c, "cli-instance-appears-live").await;

    // Delete the console's instance, after the confirmation page.
    c.find(Locator::LinkText("web-1"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    wait_for(&c, "#instance", Duration::from_secs(10)).await;
    shots.take(&c, "instance-details").await;
    click(&c, "#delete").await;
    wait_for(&c, "#confirm-delete", Duration::from_secs(10)).await;
    shots.take(&c, "confirm-delete").await;
    click(&c, "#confirm-delete").await;
    wait_for(&c, "#instances", Duration::from_secs(10)).await;
    assert_eq!(path(&c).await, project_page);
    shots.take(&c, "deleted").await;

    // In French.
    c.goto(&format!("{base}/console?lang=fr")).await.unwrap();
    assert_eq!(text(&c, "h1").await, "Projets");
    shots.take(&c, "console-in-french").await;
    c.goto(&format!("{base}/console?lang=en")).await.unwrap();

    // Another organisation's user sees none of it: not in their console, 404 by address.
    let api = Api { base: &base };
    customer(&fx, &api, "bob@example.com", "Other Org").await;
    c.delete_all_cookies().await.unwrap();
    c.goto(&format!("{base}/login")).await.unwrap();
    fill(&c, "#email", "bob@example.com").await;
    fill(&c, "#password", PASSWORD).await;
    click(&c, "#login").await;
    wait_for(&c, "#projects", Duration::from_secs(10)).await;
    let console = c.source().await.unwrap();
    assert!(
        !console.contains(&project),
        "bob's console shows ada's project"
    );
    shots.take(&c, "other-org-console").await;
    c.goto(&format!("{base}{project_page}")).await.unwrap();
    assert_eq!(text(&c, "h1").await, "Not found");
    shots.take(&c, "other-org-gets-404").await;
    c.goto(&format!("{base}{project_page}/instances/{cli_id}"))
        .await
        .unwrap();
    assert_eq!(text(&c, "h1").await, "Not found");

    // Bob deletes his (empty) project, after a page that says what happens.
    c.goto(&format!("{base}/console")).await.unwrap();
    c.find(Locator::LinkText("default"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    wait_for(&c, "#delete-project", Duration::from_secs(10)).await;
    click(&c, "#delete-project").await;
    wait_for(&c, "#confirm-delete-project", Duration::from_secs(10)).await;
    shots.take(&c, "confirm-delete-project").await;
    click(&c, "#confirm-delete-project").await;
    wait_for(&c, "p.notice", Duration::from_secs(10)).await;
    assert_eq!(path(&c).await, "/console");
    assert!(
        c.find(Locator::LinkText("default")).await.is_err(),
        "the project is still listed"
    );

    // A form posted without its CSRF token changes nothing.
    let (status, _) = api.call("POST", "/console/projects", None, None).await;
    assert_eq!(status, 403);

    c.close().await.unwrap();
}
