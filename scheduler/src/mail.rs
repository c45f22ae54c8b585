//! Mail to people (email verification, password reset, invitations). `vmcloud dev` writes
//! each mail as an `.eml` file in a folder it prints; without a folder, mails are logged.
//! Sending through an SMTP relay (lettre) comes with the relay settings.

use std::path::PathBuf;

#[derive(Debug, Clone)]
pub enum Mailer {
    /// One RFC 5322 file per mail in this folder.
    Folder(PathBuf),
    /// No mail goes out; each is logged (at info) so an operator sees what was not sent.
    Log,
}

#[derive(Debug, thiserror::Error)]
#[error("cannot write the mail to {path}")]
pub struct MailError {
    path: PathBuf,
    #[source]
    source: std::io::Error,
}

impl Mailer {
    /// Sends one plain-text mail.
    pub fn send(&self, to: &str, subject: &str, body: &str) -> Result<(), MailError> {
        match self {
            Mailer::Log => {
                tracing::info!(to, subject, "no mail relay configured; mail not sent");
                Ok(())
            }
            Mailer::Folder(dir) => {
                let now = crate::clock::now_ms();
                let safe: String = to
                    .chars()
                    .map(|c| {
                        if c.is_ascii_alphanumeric() || c == '.' || c == '@' {
                            c
                        } else {
                            '_'
                        }
                    })
                    .collect();
                let path = dir.join(format!("{now}-{safe}.eml"));
                let text = format!(
                    "From: VMCloud <no-reply@vmcloud.example>\r\nTo: {to}\r\nSubject: {subject}\r\nDate: {}\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n{}\r\n",
                    crate::clock::rfc3339(now),
                    body.replace('\n', "\r\n")
                );
                std::fs::create_dir_all(dir)
                    .and_then(|()| std::fs::write(&path, text))
                    .map_err(|source| MailError {
                        path: path.clone(),
                        source,
                    })?;
                tracing::info!(to, subject, path = %path.display(), "mail written");
                Ok(())
            }
        }
    }
}
