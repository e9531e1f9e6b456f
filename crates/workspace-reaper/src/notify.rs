//! The notifier port: notices to users and alerts to on-call. The AWS adapter sends each user
//! notice as one email through Amazon SES (v2 `SendEmail`, raw MIME with plain-text and HTML
//! parts, through the configuration set whose event destination sends bounces and complaints to
//! on-call) and publishes alerts to the SNS alert topic. A recording fake for tests sits behind
//! the `test-util` feature (never in the Lambda).

use async_trait::async_trait;

use crate::notice::UserNotice;

/// An on-call alert (ids and counts only).
#[derive(Debug, Clone, PartialEq)]
pub struct Alert {
    pub subject: String,
    pub body: String,
}

#[derive(Debug, thiserror::Error)]
#[error("notify: {0}")]
pub struct NotifyError(pub String);

#[async_trait]
pub trait Notifier: Send + Sync {
    async fn notify_user(&self, n: &UserNotice) -> Result<(), NotifyError>;
    async fn alert(&self, a: &Alert) -> Result<(), NotifyError>;
}

/// Where user email comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EmailSender {
    /// The From address (of a verified SES identity).
    pub from: String,
    /// The SES configuration set (bounce and complaint events to on-call).
    pub configuration_set: String,
}

/// SES for user notices, SNS for alerts.
#[derive(Debug, Clone)]
pub struct AwsNotifier {
    ses: aws_sdk_sesv2::Client,
    sender: EmailSender,
    sns: aws_sdk_sns::Client,
    alert_topic: String,
}

impl AwsNotifier {
    pub fn new(
        ses: aws_sdk_sesv2::Client,
        sender: EmailSender,
        sns: aws_sdk_sns::Client,
        alert_topic: String,
    ) -> Self {
        Self { ses, sender, sns, alert_topic }
    }
}

fn snserr<E: std::error::Error>(e: E) -> NotifyError {
    NotifyError(aws_sdk_sns::error::DisplayErrorContext(e).to_string())
}

fn seserr<E: std::error::Error>(e: E) -> NotifyError {
    NotifyError(aws_sdk_sesv2::error::DisplayErrorContext(e).to_string())
}

/// SNS subjects: ASCII, no line breaks, at most 100 characters.
fn subject(s: &str) -> String {
    s.chars().filter(|c| c.is_ascii() && !c.is_ascii_control()).take(100).collect()
}

#[async_trait]
impl Notifier for AwsNotifier {
    async fn notify_user(&self, n: &UserNotice) -> Result<(), NotifyError> {
        use aws_sdk_sesv2::types::{Destination, EmailContent, MessageTag, RawMessage};
        let raw = RawMessage::builder()
            .data(aws_sdk_sesv2::primitives::Blob::new(crate::email::mime(&self.sender.from, n)))
            .build()
            .map_err(seserr)?;
        let tag = MessageTag::builder().name("sender").value("workspace-reaper").build().map_err(seserr)?;
        self.ses
            .send_email()
            .from_email_address(&self.sender.from)
            .destination(Destination::builder().to_addresses(&n.email).build())
            .content(EmailContent::builder().raw(raw).build())
            .configuration_set_name(&self.sender.configuration_set)
            .email_tags(tag)
            .send()
            .await
            .map_err(seserr)?;
        Ok(())
    }

    async fn alert(&self, a: &Alert) -> Result<(), NotifyError> {
        self.sns
            .publish()
            .topic_arn(&self.alert_topic)
            .subject(subject(&a.subject))
            .message(&a.body)
            .send()
            .await
            .map_err(snserr)?;
        Ok(())
    }
}

#[cfg(any(test, feature = "test-util"))]
pub use recording::RecordingNotifier;

/// Test-only: a notifier that records instead of sending.
#[cfg(any(test, feature = "test-util"))]
mod recording {
    use std::sync::Mutex;

    use async_trait::async_trait;

    use super::{Alert, Notifier, NotifyError};
    use crate::notice::UserNotice;

    /// Records what would have been sent.
    #[derive(Debug, Default)]
    pub struct RecordingNotifier {
        pub notices: Mutex<Vec<UserNotice>>,
        pub alerts: Mutex<Vec<Alert>>,
    }

    impl RecordingNotifier {
        pub fn notices(&self) -> Vec<UserNotice> {
            self.notices.lock().map(|v| v.clone()).unwrap_or_default()
        }
        pub fn alerts(&self) -> Vec<Alert> {
            self.alerts.lock().map(|v| v.clone()).unwrap_or_default()
        }
    }

    #[async_trait]
    impl Notifier for RecordingNotifier {
        async fn notify_user(&self, n: &UserNotice) -> Result<(), NotifyError> {
            self.notices.lock().map_err(|_| NotifyError("poisoned".into()))?.push(n.clone());
            Ok(())
        }
        async fn alert(&self, a: &Alert) -> Result<(), NotifyError> {
            self.alerts.lock().map_err(|_| NotifyError("poisoned".into()))?.push(a.clone());
            Ok(())
        }
    }
}
