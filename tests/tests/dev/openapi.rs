//! The OpenAPI document: served without auth, 3.1, one operation per route of the router
//! (and no other), every schema it references defined, every problem type the code answers
//! listed — and valid according to an independent validator (PyPI's openapi-spec-validator).

use std::collections::BTreeSet;
use std::process::Command;

use serde_json::Value;

use super::{Fixture, get_json};

/// Every `$ref` in `v`.
fn refs(v: &Value, out: &mut BTreeSet<String>) {
    match v {
        Value::Object(m) => {
            for (k, v) in m {
                if k == "$ref" {
                    out.insert(v.as_str().unwrap_or_default().to_owned());
                } else {
                    refs(v, out);
                }
            }
        }
        Value::Array(a) => a.iter().for_each(|v| refs(v, out)),
        _ => {}
    }
}

/// Every problem kind the scheduler's sources answer with.
fn problem_kinds_in_code() -> BTreeSet<String> {
    let root = concat!(env!("CARGO_MANIFEST_DIR"), "/../scheduler/src");
    let mut kinds = BTreeSet::new();
    let mut dirs = vec![std::path::PathBuf::from(root)];
    let pattern = |text: &str, call: &str, kinds: &mut BTreeSet<String>| {
        for chunk in text.split(call).skip(1) {
            // The first string literal of the call, when it looks like a kind.
            let head: String = chunk.chars().take(120).collect();
            if let Some(lit) = head.split('"').nth(1)
                && !lit.is_empty()
                && lit
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b == b'-' || b.is_ascii_digit())
                && head.split('"').next().is_some_and(|before| {
                    before
                        .chars()
                        .all(|c| c.is_whitespace() || c.is_alphanumeric() || ":,_".contains(c))
                })
            {
                kinds.insert(lit.to_owned());
            }
        }
    };
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                dirs.push(path);
            } else if path.extension().is_some_and(|e| e == "rs") && !path.ends_with("tests.rs") {
                let text = std::fs::read_to_string(&path).unwrap();
                for call in [
                    "Problem::new(",
                    "Problem::unprocessable(",
                    "refused(\n",
                    "refused(\"",
                ] {
                    pattern(&text, call, &mut kinds);
                }
            }
        }
    }
    kinds
}

#[tokio::test]
async fn the_document_covers_every_route_and_problem_and_validates() {
    let fx = Fixture::start();
    let (status, doc) = get_json(&format!("{}/v1/openapi.json", fx.fleet.api), None).await;
    assert_eq!(status, 200);
    assert_eq!(doc["openapi"], "3.1.0");

    // Routes: the router's, exactly.
    let declared = vmcloud_tests::declared_routes();
    let mut documented = BTreeSet::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for method in item.as_object().unwrap().keys() {
            documented.insert((method.to_uppercase(), path.clone()));
        }
    }
    let missing: Vec<_> = declared.difference(&documented).collect();
    let extra: Vec<_> = documented.difference(&declared).collect();
    assert!(missing.is_empty(), "routes the document lacks: {missing:?}");
    assert!(extra.is_empty(), "operations no route serves: {extra:?}");
    eprintln!(
        "{} operations over {} paths",
        documented.len(),
        doc["paths"].as_object().unwrap().len()
    );

    // Every reference resolves.
    let mut all = BTreeSet::new();
    refs(&doc, &mut all);
    let schemas = doc["components"]["schemas"].as_object().unwrap();
    for r in &all {
        let name = r.trim_start_matches("#/components/schemas/");
        assert!(schemas.contains_key(name), "{r} is not defined");
    }

    // Every problem type the code answers is in the document, and nothing else.
    let listed: BTreeSet<String> =
        doc["components"]["schemas"]["Problem"]["properties"]["type"]["enum"]
            .as_array()
            .unwrap()
            .iter()
            .map(|k| {
                k.as_str()
                    .unwrap()
                    .trim_start_matches("urn:vmcloud:problem:")
                    .to_owned()
            })
            .collect();
    let in_code = problem_kinds_in_code();
    let undocumented: Vec<_> = in_code.difference(&listed).collect();
    assert!(
        undocumented.is_empty(),
        "problem types missing: {undocumented:?}"
    );
    let stale: Vec<_> = listed.difference(&in_code).collect();
    assert!(stale.is_empty(), "problem types no code answers: {stale:?}");

    // `vmcloud api spec` prints the same document, without a server.
    let out = fx.fleet.cli(&["api", "spec"]);
    assert!(out.status.success());
    let printed: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(printed["paths"], doc["paths"]);

    // An independent validator agrees it is valid OpenAPI 3.1.
    let Some(python) = vmcloud_tests::python_with("openapi_spec_validator") else {
        vmcloud_proto::testing::skip(
            "the_document_covers_every_route_and_problem_and_validates (validation)",
            "no Python with openapi-spec-validator (scripts/test makes .venv with it)",
        );
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("openapi.json");
    std::fs::write(&file, serde_json::to_vec(&doc).unwrap()).unwrap();
    let out = Command::new(python)
        .args(["-m", "openapi_spec_validator"])
        .arg(&file)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}
