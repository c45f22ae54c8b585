//! Private networks through a running `vmcloud dev`: an instance created with no network
//! joins the project's default one and gets the first free address (shown by the API and the
//! CLI); a named network and an asked-for address; bad subnets and taken addresses refused
//! with a 422 naming the field, nothing made; a network with instances is not deleted.

use serde_json::Value;

use super::{Fixture, cli_fails as refused, cli_json};

#[tokio::test]
async fn instances_get_private_addresses_on_default_and_named_networks() {
    let fx = Fixture::start();
    let create = [
        "instance",
        "create",
        "--flavor",
        "vps-s",
        "--image",
        "debian-12",
        "--region",
        "par",
    ];

    // No network named: the default network of par, made now; the first free address.
    let first = cli_json(&fx, &create);
    assert_eq!(first["private_ipv4"], "10.0.0.3", "{first}");
    let default = first["network"].as_str().unwrap().to_owned();
    assert!(first["mac"].as_str().unwrap().starts_with("02:"), "{first}");
    let second = cli_json(&fx, &create);
    assert_eq!(second["private_ipv4"], "10.0.0.4", "{second}");
    assert_eq!(second["network"], default.as_str());
    let list = cli_json(&fx, &["network", "list"]);
    let nets = list["networks"].as_array().unwrap();
    assert_eq!(nets.len(), 1, "{list}");
    assert_eq!(nets[0]["default"], true);
    assert_eq!(nets[0]["subnet"], "10.0.0.0/24");
    assert_eq!(nets[0]["addresses_used"], 2);
    assert!(nets[0]["vni"].as_u64().unwrap() >= 4096, "{list}");
    // The table shows the address.
    let out = fx.fleet.cli(&["instance", "list"]);
    let table = String::from_utf8_lossy(&out.stdout);
    assert!(
        table.contains("PRIVATE IPV4") && table.contains("10.0.0.3"),
        "{table}"
    );

    // A named network, an asked-for address.
    let backend = cli_json(
        &fx,
        &[
            "network",
            "create",
            "backend",
            "--subnet",
            "10.20.0.0/24",
            "--region",
            "par",
        ],
    );
    let backend_id = backend["id"].as_str().unwrap().to_owned();
    assert_ne!(backend["vni"], nets[0]["vni"]);
    let mut args = create.to_vec();
    args.extend(["--network", &backend_id, "--private-ipv4", "10.20.0.10"]);
    let pinned = cli_json(&fx, &args);
    assert_eq!(pinned["private_ipv4"], "10.20.0.10", "{pinned}");
    // The same address again, one outside, a reserved one: 422 naming the field.
    for (ip, says) in [
        ("10.20.0.10", "is taken by instance"),
        ("10.21.0.10", "is outside"),
        ("10.20.0.1", "is reserved"),
    ] {
        let mut args = create.to_vec();
        args.extend(["--network", &backend_id, "--private-ipv4", ip]);
        let e = refused(&fx, &args);
        assert!(
            e.contains("422") && e.contains("`private_ipv4`") && e.contains(says),
            "{e}"
        );
    }
    // Bad subnets: 422 naming `subnet`, nothing made.
    for (subnet, says) in [
        ("8.8.8.0/24", "not a private range"),
        ("10.20.0.0/25", "overlaps"),
        ("10.30.0.0/8", "/16 to /28"),
    ] {
        let e = refused(&fx, &["network", "create", "bad", "--subnet", subnet]);
        assert!(
            e.contains("422") && e.contains("`subnet`") && e.contains(says),
            "{subnet}: {e}"
        );
    }
    let list = cli_json(&fx, &["network", "list"]);
    assert_eq!(list["networks"].as_array().unwrap().len(), 2, "{list}");

    // A network with instances stays; once they are gone it can go.
    let e = refused(&fx, &["network", "delete", &backend_id]);
    assert!(
        e.contains("409") && e.contains("still has 1 instance"),
        "{e}"
    );
    let out = fx.fleet.cli(&[
        "instance",
        "delete",
        pinned["id"].as_str().unwrap(),
        "--wait",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = fx.fleet.cli(&["network", "delete", &backend_id]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // Running, with the NIC in the host's desired config.
    let id = first["id"].as_str().unwrap();
    let running = super::eventually(std::time::Duration::from_secs(30), "running", || async {
        let (_, i) = super::get_json(
            &format!("{}/v1/instances/{id}", fx.fleet.api),
            Some(&fx.fleet.token),
        )
        .await;
        (i["state"] == "running").then_some(i)
    })
    .await;
    assert_eq!(running["private_ipv4"], "10.0.0.3");
    // Placed on the dev host, whose /64 is 2001:db8:0:1::/64.
    assert!(
        running["ipv6"]
            .as_str()
            .unwrap()
            .starts_with("2001:db8:0:1:"),
        "{running}"
    );
}

#[tokio::test]
async fn public_addresses_come_from_the_region_pools_and_floating_ips_move() {
    let fx = Fixture::start();
    let free_in_par = || async {
        let metrics = reqwest::get(format!("{}/metrics", fx.fleet.api))
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        metrics
            .lines()
            .find_map(|l| l.strip_prefix("vmcloud_public_ipv4_free{region=\"par\"} "))
            .and_then(|v| v.trim().parse::<u32>().ok())
            .unwrap_or_else(|| panic!("no par pool gauge in:\n{metrics}"))
    };
    // (The demo customer may hold some already.)
    let free_before = free_in_par().await;
    // Its own public address, from par's pool (203.0.113.0/26).
    let web = cli_json(
        &fx,
        &[
            "instance",
            "create",
            "--flavor",
            "vps-s",
            "--image",
            "debian-12",
            "--region",
            "par",
            "--public-ipv4",
        ],
    );
    let own = web["public_ipv4"].as_str().unwrap().to_owned();
    assert!(own.starts_with("203.0.113."), "{web}");
    let web_id = web["id"].as_str().unwrap().to_owned();
    // A floating IP, assigned, with a reverse DNS name.
    let fip = cli_json(
        &fx,
        &["ip", "create", "--region", "par", "--instance", &web_id],
    );
    let floating = fip["address"].as_str().unwrap().to_owned();
    assert!(
        floating.starts_with("203.0.113.") && floating != own,
        "{fip}"
    );
    assert_eq!(fip["instance"], web_id.as_str());
    let fip_id = fip["id"].as_str().unwrap().to_owned();
    let shown = cli_json(&fx, &["instance", "get", &web_id]);
    assert_eq!(
        shown["floating_ips"],
        serde_json::json!([fip_id]),
        "{shown}"
    );
    let rdns = cli_json(&fx, &["ip", "rdns", &floating, "mail.example.org"]);
    assert_eq!(rdns["reverse_dns"], "mail.example.org");
    let out = fx.fleet.cli(&["ip", "rdns", &floating, "not a name"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("`reverse_dns`"));
    // Another region's floating IP does not go to a par instance.
    let fra = cli_json(&fx, &["ip", "create", "--region", "fra"]);
    assert!(
        fra["address"].as_str().unwrap().starts_with("203.0.113."),
        "{fra}"
    );
    let out = fx
        .fleet
        .cli(&["ip", "assign", fra["id"].as_str().unwrap(), &web_id]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains("422") && err.contains("is in fra"),
        "{err}"
    );
    // The pools show in /metrics: two fewer free in par.
    assert_eq!(free_in_par().await, free_before - 2);
    // The instance goes; the floating IP stays, unassigned, and its own address is free again.
    let out = fx.fleet.cli(&["instance", "delete", &web_id, "--wait"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let list = cli_json(&fx, &["ip", "list"]);
    let kept = list["floating_ips"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["id"] == fip_id.as_str())
        .unwrap()
        .clone();
    assert!(kept.get("instance").is_none(), "{kept}");
    let again = cli_json(
        &fx,
        &[
            "instance",
            "create",
            "--flavor",
            "vps-s",
            "--image",
            "debian-12",
            "--region",
            "par",
            "--public-ipv4",
        ],
    );
    assert_eq!(
        again["public_ipv4"],
        own.as_str(),
        "the first free again: {again}"
    );
}

#[tokio::test]
async fn the_demo_customer_shows_networks_public_addresses_and_a_firewall() {
    let fx = Fixture::start_with(&["--demo-instance", "true"]);
    let password = std::fs::read_to_string(fx.fleet.data_dir.join("demo-password")).unwrap();
    let login = super::http()
        .post(format!("{}/v1/login", fx.fleet.api))
        .json(&serde_json::json!({"email": "demo@vmcloud.example",
            "password": password.trim()}))
        .send()
        .await
        .unwrap();
    assert_eq!(login.status(), 200);
    let token = login.json::<Value>().await.unwrap()["token"]
        .as_str()
        .unwrap()
        .to_owned();
    let (_, projects) =
        super::get_json(&format!("{}/v1/projects", fx.fleet.api), Some(&token)).await;
    let project = projects["projects"][0]["id"].as_str().unwrap().to_owned();
    let get = |path: &str| {
        let url = format!("{}{path}?project={project}", fx.fleet.api);
        let token = token.clone();
        async move { super::get_json(&url, Some(&token)).await.1 }
    };
    let web = super::eventually(
        std::time::Duration::from_secs(30),
        "demo-web running",
        || async {
            let list = get("/v1/instances").await;
            list["instances"]
                .as_array()
                .unwrap()
                .iter()
                .find(|i| i["name"] == "demo-web" && i["state"] == "running")
                .cloned()
        },
    )
    .await;
    assert_eq!(web["private_ipv4"], "10.0.0.3", "{web}");
    assert!(
        web["public_ipv4"]
            .as_str()
            .unwrap()
            .starts_with("203.0.113."),
        "{web}"
    );
    assert_eq!(web["firewalls"].as_array().unwrap().len(), 1, "{web}");
    assert_eq!(web["floating_ips"].as_array().unwrap().len(), 1, "{web}");
    let nets = get("/v1/networks").await;
    let names: Vec<&str> = nets["networks"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|n| n["name"].as_str())
        .collect();
    assert!(
        names.contains(&"backend") && names.contains(&"default-par"),
        "{nets}"
    );
    let fws = get("/v1/firewalls").await;
    assert_eq!(fws["firewalls"][0]["name"], "web", "{fws}");
}
