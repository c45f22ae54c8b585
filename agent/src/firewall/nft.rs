//! [`Nft`]: the [`Firewall`] of a real host, through the `nft` program (nftables): one script
//! per change, applied as one transaction.

use std::io::Write as _;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::Mutex;

use crate::firewall::{Firewall, FirewallError, Ruleset, script};

#[derive(Debug, Default)]
pub struct Nft {
    /// The network namespace the tenant networks are in (`/run/netns/NAME`); `None`: the
    /// agent's own.
    pub netns: Option<PathBuf>,
    /// The last ruleset applied, to skip re-applying the same one.
    last: Mutex<Option<Ruleset>>,
}

impl Nft {
    pub fn new(netns: Option<PathBuf>) -> Nft {
        Nft {
            netns,
            last: Mutex::new(None),
        }
    }

    /// `program` run in the tenant namespace.
    fn command(&self, program: &str) -> Command {
        match &self.netns {
            Some(ns) => {
                let mut c = Command::new("nsenter");
                c.arg(format!("--net={}", ns.display())).arg(program);
                c
            }
            None => Command::new(program),
        }
    }

    /// Bridged IPv4 traffic goes through the forward hook (br_netfilter), in the tenant
    /// namespace (the setting is per namespace).
    fn bridged_traffic_filtered(&self) -> Result<(), FirewallError> {
        let out = self
            .command("sysctl")
            .args([
                "-q",
                "-w",
                "net.bridge.bridge-nf-call-iptables=1",
                "net.bridge.bridge-nf-call-ip6tables=1",
            ])
            .output()
            .map_err(|e| FirewallError::Spawn(format!("sysctl: {e}")))?;
        if !out.status.success() {
            return Err(FirewallError::Refused(format!(
                "cannot make bridged traffic go through nftables (net.bridge.bridge-nf-call-iptables): {}; load br_netfilter (modprobe br_netfilter)",
                String::from_utf8_lossy(&out.stderr).trim()
            )));
        }
        Ok(())
    }
}

impl Firewall for Nft {
    fn apply(&self, ruleset: &Ruleset) -> Result<(), FirewallError> {
        let mut last = self.last.lock().unwrap();
        if last.as_ref() == Some(ruleset) {
            return Ok(());
        }
        if !ruleset.is_empty() {
            self.bridged_traffic_filtered()?;
        }
        let text = script(ruleset);
        let mut child = self
            .command("nft")
            .args(["-f", "-"])
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| FirewallError::Spawn(format!("{e} (is nftables installed?)")))?;
        child
            .stdin
            .take()
            .expect("piped")
            .write_all(text.as_bytes())
            .map_err(|e| FirewallError::Spawn(e.to_string()))?;
        let out = child
            .wait_with_output()
            .map_err(|e| FirewallError::Spawn(e.to_string()))?;
        if !out.status.success() {
            return Err(FirewallError::Refused(
                String::from_utf8_lossy(&out.stderr).trim().to_owned(),
            ));
        }
        *last = Some(ruleset.clone());
        Ok(())
    }
}
