//! Graph API management reads and writes for `wabot doctor` and onboarding: the token's app,
//! the apps subscribed to a WhatsApp Business Account (and subscribing ours), a number's status
//! and throughput, templates by name, and Embedded Signup (a code for a business's token, a
//! number registered).

use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;

use super::client::CloudApi;
use super::error::CloudApiError;
use crate::domain::PhoneNumberId;

/// An app as the Graph API names it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
pub struct AppInfo {
    #[serde(default)]
    pub id: String,
    #[serde(default)]
    pub name: String,
}

/// One entry of `GET /{waba}/subscribed_apps`: current versions nest the app in
/// `whatsapp_business_api_data`, older ones put `id` and `name` at the top.
#[derive(Debug, Deserialize)]
struct SubscribedApp {
    #[serde(default)]
    whatsapp_business_api_data: Option<AppInfo>,
    #[serde(flatten)]
    flat: AppInfo,
}

#[derive(Debug, Deserialize)]
struct DataList<T> {
    #[serde(default = "Vec::new")]
    data: Vec<T>,
}

/// `GET /oauth/access_token`'s answer.
#[derive(Deserialize)]
struct AccessToken {
    #[serde(default)]
    access_token: String,
}

#[derive(Debug, Deserialize)]
struct Success {
    #[serde(default)]
    success: bool,
}

/// What `GET /{phone-number-id}` tells about a business number (absent fields: `None`).
#[derive(Debug, Clone, Default, Deserialize)]
pub struct PhoneNumberInfo {
    #[serde(default)]
    pub display_phone_number: Option<String>,
    #[serde(default)]
    pub verified_name: Option<String>,
    /// `CONNECTED` when it can send; `PENDING`, `FLAGGED`, `RESTRICTED`, `BANNED`... otherwise.
    #[serde(default)]
    pub status: Option<String>,
    /// `GREEN`, `YELLOW`, `RED`, `UNKNOWN`.
    #[serde(default)]
    pub quality_rating: Option<String>,
    /// `CLOUD_API` for numbers wabot can use.
    #[serde(default)]
    pub platform_type: Option<String>,
    #[serde(default)]
    pub throughput: Option<Throughput>,
    /// Business-initiated conversations per 24 h: `TIER_250`, `TIER_1K`, ... `TIER_UNLIMITED`.
    #[serde(default)]
    pub messaging_limit_tier: Option<String>,
    #[serde(default)]
    pub name_status: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct Throughput {
    /// `STANDARD` (80 messages/s) or `HIGH` (up to 1,000).
    #[serde(default)]
    pub level: Option<String>,
}

/// A message template of the WABA.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct TemplateInfo {
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub language: String,
    /// `APPROVED`, `PENDING`, `REJECTED`, `PAUSED`, `DISABLED`...
    #[serde(default)]
    pub status: String,
    #[serde(default)]
    pub category: Option<String>,
    #[serde(default)]
    pub rejected_reason: Option<String>,
}

const PHONE_FIELDS: &str = "display_phone_number,verified_name,status,quality_rating,\
platform_type,throughput,messaging_limit_tier,name_status";

impl CloudApi {
    /// The app the access token belongs to (`GET /app`).
    pub async fn token_app(&self) -> Result<AppInfo, CloudApiError> {
        self.get_graph("app", &[("fields", "id,name")], None).await
    }

    /// The apps subscribed to the WABA's webhooks (`GET /{waba}/subscribed_apps`).
    pub async fn subscribed_apps(&self, waba: &str) -> Result<Vec<AppInfo>, CloudApiError> {
        let list: DataList<SubscribedApp> = self
            .get_graph(&format!("{waba}/subscribed_apps"), &[], None)
            .await?;
        Ok(list
            .data
            .into_iter()
            .map(|app| app.whatsapp_business_api_data.unwrap_or(app.flat))
            .collect())
    }

    /// Subscribes the token's app to the WABA's webhooks (`POST /{waba}/subscribed_apps`).
    pub async fn subscribe_app(&self, waba: &str) -> Result<bool, CloudApiError> {
        let answer: Success = self.post_graph(&format!("{waba}/subscribed_apps")).await?;
        Ok(answer.success)
    }

    /// Exchanges the code of Meta's Embedded Signup for the business's token
    /// (`GET /oauth/access_token` with the app's id and secret).
    pub async fn exchange_code(
        &self,
        app_id: &str,
        app_secret: &SecretString,
        code: &str,
    ) -> Result<SecretString, CloudApiError> {
        let answer: AccessToken = self
            .get_graph_public(
                "oauth/access_token",
                &[
                    ("client_id", app_id),
                    ("client_secret", app_secret.expose_secret()),
                    ("code", code),
                ],
            )
            .await?;
        if answer.access_token.trim().is_empty() {
            return Err(CloudApiError::Decode(
                "the code exchange answered no access_token".into(),
            ));
        }
        Ok(SecretString::from(answer.access_token.trim()))
    }

    /// Registers a business number for the Cloud API (`POST /{number}/register`), setting its
    /// two-step verification `pin`.
    pub async fn register_number(
        &self,
        number: &PhoneNumberId,
        pin: &SecretString,
    ) -> Result<bool, CloudApiError> {
        let answer: Success = self
            .post_graph_json(
                &format!("{}/register", number.as_str()),
                &serde_json::json!({"messaging_product": "whatsapp", "pin": pin.expose_secret()}),
            )
            .await?;
        Ok(answer.success)
    }

    /// Uploads the Flows public key of a number (`POST /{number}/whatsapp_business_encryption`,
    /// `business_public_key`: SPKI PEM); Meta then encrypts its Flows requests for that key.
    pub async fn upload_flows_key(
        &self,
        number: &PhoneNumberId,
        public_pem: &str,
    ) -> Result<bool, CloudApiError> {
        let answer: Success = self
            .post_graph_form(
                &format!("{}/whatsapp_business_encryption", number.as_str()),
                &[("business_public_key", public_pem)],
                number,
            )
            .await?;
        Ok(answer.success)
    }

    /// Status, quality, platform and throughput of a business number.
    pub async fn phone_number(
        &self,
        number: &PhoneNumberId,
    ) -> Result<PhoneNumberInfo, CloudApiError> {
        self.get_graph(number.as_str(), &[("fields", PHONE_FIELDS)], Some(number))
            .await
    }

    /// The WABA's templates called `name` (every language), first page of up to 100.
    pub async fn templates_named(
        &self,
        waba: &str,
        name: &str,
    ) -> Result<Vec<TemplateInfo>, CloudApiError> {
        let list: DataList<TemplateInfo> = self
            .get_graph(
                &format!("{waba}/message_templates"),
                &[
                    ("name", name),
                    ("fields", "name,language,status,category,rejected_reason"),
                    ("limit", "100"),
                ],
                None,
            )
            .await?;
        // `name` filters by substring at Meta; only the exact name counts.
        Ok(list.data.into_iter().filter(|t| t.name == name).collect())
    }
}
