//! Mail to people (email verification, password reset, invitations): through an SMTP relay
//! (lettre; `--smtp-url`), or — `vmcloud dev` — as one `.eml` file per mail in a folder it
//! prints; with neither, mails are logged.

use std::path::PathBuf;

use lettre::message::Mailbox;
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};

/// Where mail goes.
#[derive(Debug, Clone)]
pub enum Mailer {
    /// An SMTP relay, and the sender mails come from.
    Smtp {
        transport: Box<AsyncSmtpTransport<Tokio1Executor>>,
        from: Mailbox,
    },
    /// One RFC 5322 file per mail in this folder.
    Folder(PathBuf),
    /// No mail goes out; each is logged (at info) so an operator sees what was not sent.
    Log,
}

#[derive(Debug, thiserror::Error)]
pub enum MailError {
    #[error("cannot write the mail to {path}")]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot build a mail to {to}: {reason}")]
    Build { to: String, reason: String },
    #[error("the mail relay refused or could not take the mail to {to}")]
    Relay {
        to: String,
        #[source]
        source: lettre::transport::smtp::Error,
    },
}

#[derive(Debug, thiserror::Error)]
pub enum MailConfigError {
    #[error(
        "--smtp-url: {0} (expected smtp://HOST:PORT for a plain relay, smtp://USER:PASS@HOST:587?tls=required for STARTTLS, or smtps://…:465)"
    )]
    Url(lettre::transport::smtp::Error),
    #[error("--mail-from: `{0}` is not a mailbox (expected `VMCloud <no-reply@example.com>`)")]
    From(String),
}

impl Mailer {
    /// A relay from an `smtp://` or `smtps://` URL (lettre's format), sending as `from`.
    pub fn smtp(url: &str, from: &str) -> Result<Mailer, MailConfigError> {
        let transport = Box::new(
            AsyncSmtpTransport::<Tokio1Executor>::from_url(url)
                .map_err(MailConfigError::Url)?
                .build(),
        );
        let from = from
            .parse()
            .map_err(|_| MailConfigError::From(from.to_owned()))?;
        Ok(Mailer::Smtp { transport, from })
    }

    /// Sends one plain-text mail.
    pub async fn send(&self, to: &str, subject: &str, body: &str) -> Result<(), MailError> {
        match self {
            Mailer::Smtp { transport, from } => {
                let build = |reason: String| MailError::Build {
                    to: to.to_owned(),
                    reason,
                };
                let message = Message::builder()
                    .from(from.clone())
                    .to(to.parse().map_err(|e| build(format!("{e}")))?)
                    .subject(subject)
                    .body(body.to_owned())
                    .map_err(|e| build(e.to_string()))?;
                transport
                    .send(message)
                    .await
                    .map_err(|source| MailError::Relay {
                        to: to.to_owned(),
                        source,
                    })?;
                tracing::info!(to, subject, "mail sent");
                Ok(())
            }
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
                    .map_err(|source| MailError::Write {
                        path: path.clone(),
                        source,
                    })?;
                tracing::info!(to, subject, path = %path.display(), "mail written");
                Ok(())
            }
        }
    }
}
