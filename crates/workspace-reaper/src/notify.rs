//! The notifier port: notices to at-risk users and alerts to on-call, with an SNS adapter and a
//! recording fake.

use std::sync::Mutex;

use async_trait::async_trait;

/// A notice to one at-risk user.
#[derive(Debug, Clone, PartialEq)]
pub struct UserNotice {
    pub email: String,
    pub workspace_id: String,
    pub subject: String,
    pub body: String,
}

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

/// SNS: user notices go to the notify topic with an `email` message attribute (subscriptions
/// filter on it); alerts go to the alert topic.
#[derive(Debug, Clone)]
pub struct SnsNotifier {
    client: aws_sdk_sns::Client,
    notify_topic: String,
    alert_topic: String,
}

impl SnsNotifier {
    pub fn new(client: aws_sdk_sns::Client, notify_topic: String, alert_topic: String) -> Self {
        Self { client, notify_topic, alert_topic }
    }
}

fn snserr<E: std::error::Error>(e: E) -> NotifyError {
    NotifyError(aws_sdk_sns::error::DisplayErrorContext(e).to_string())
}

/// SNS subjects: ASCII, no line breaks, at most 100 characters.
fn subject(s: &str) -> String {
    s.chars().filter(|c| c.is_ascii() && !c.is_ascii_control()).take(100).collect()
}

#[async_trait]
impl Notifier for SnsNotifier {
    async fn notify_user(&self, n: &UserNotice) -> Result<(), NotifyError> {
        let attr = aws_sdk_sns::types::MessageAttributeValue::builder()
            .data_type("String")
            .string_value(&n.email)
            .build()
            .map_err(snserr)?;
        self.client
            .publish()
            .topic_arn(&self.notify_topic)
            .subject(subject(&n.subject))
            .message(&n.body)
            .message_attributes("email", attr)
            .send()
            .await
            .map_err(snserr)?;
        Ok(())
    }

    async fn alert(&self, a: &Alert) -> Result<(), NotifyError> {
        self.client
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
