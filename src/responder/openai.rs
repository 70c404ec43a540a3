//! The `openai` responder: any OpenAI-compatible Chat Completions endpoint (OpenAI, Ollama, vLLM,
//! llama.cpp, Groq...). The conversation history becomes the chat messages; on an error or a
//! timeout the configured fallback text is answered and the cause is logged.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};

use super::{HistoryTurn, Speaker};
use super::{Reply, Responder, ResponderInput};
use crate::cloud_api::read_limited;
use crate::configuration::OpenAiSettings;
use crate::domain::MessageContent;
use crate::error::error_chain;
use crate::i18n::{Language, Sentence, Texts};

pub struct OpenAiResponder {
    http: reqwest::Client,
    url: String,
    model: String,
    api_key: SecretString,
    system_prompt: String,
    temperature: f32,
    max_tokens: u32,
    history_chars: usize,
    /// `responder.openai.fallback` is folded into these (see `i18n::Texts::from_settings`).
    texts: Arc<Texts>,
}

#[derive(Debug, Serialize)]
struct ChatRequest<'a> {
    model: &'a str,
    messages: Vec<ChatMessage<'a>>,
    temperature: f32,
    max_tokens: u32,
}

#[derive(Debug, Serialize, PartialEq)]
struct ChatMessage<'a> {
    role: &'static str,
    content: &'a str,
}

#[derive(Debug, Deserialize)]
struct ChatResponse {
    #[serde(default)]
    choices: Vec<Choice>,
}

#[derive(Debug, Deserialize)]
struct Choice {
    message: ChoiceMessage,
}

#[derive(Debug, Deserialize)]
struct ChoiceMessage {
    #[serde(default)]
    content: Option<String>,
}

#[derive(Debug, thiserror::Error)]
enum LlmError {
    #[error("the model endpoint did not answer in time")]
    Timeout(#[source] reqwest::Error),
    #[error("could not reach the model endpoint")]
    Network(#[source] reqwest::Error),
    #[error("the model endpoint answered HTTP {status}: {body}")]
    Status { status: u16, body: String },
    #[error("the model answer has no text")]
    Empty,
    #[error("the model answer is larger than {limit} bytes")]
    TooLarge { limit: usize },
    #[error("the model answer is not a chat completion: {0}")]
    Decode(String),
}

/// Largest chat completion read; `max_tokens` keeps real ones far below.
const MAX_RESPONSE_BYTES: usize = 1024 * 1024;

impl OpenAiResponder {
    pub fn new(
        settings: &OpenAiSettings,
        texts: Arc<Texts>,
    ) -> Result<OpenAiResponder, reqwest::Error> {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_millis(settings.timeout_ms))
            .connect_timeout(Duration::from_secs(5))
            .build()?;
        Ok(OpenAiResponder {
            http,
            url: format!(
                "{}/chat/completions",
                settings.base_url.trim_end_matches('/')
            ),
            model: settings.model.clone(),
            api_key: settings.api_key.clone(),
            system_prompt: settings.system_prompt.clone(),
            temperature: settings.temperature,
            max_tokens: settings.max_tokens,
            history_chars: settings.history_chars,
            texts,
        })
    }

    /// System prompt, then the newest turns that fit the character budget, oldest first. The
    /// last turn (the message being answered) is always included.
    fn messages<'a>(&'a self, history: &'a [HistoryTurn]) -> Vec<ChatMessage<'a>> {
        let mut budget = self.history_chars;
        let mut picked: Vec<ChatMessage<'a>> = Vec::new();
        for (i, turn) in history.iter().rev().filter(|t| !t.rate_limited).enumerate() {
            let len = turn.text.chars().count();
            if i > 0 && len > budget {
                break;
            }
            budget = budget.saturating_sub(len);
            picked.push(ChatMessage {
                role: match turn.speaker {
                    Speaker::User => "user",
                    // The business's people speak for the business, like the bot.
                    Speaker::Bot | Speaker::Operator => "assistant",
                },
                content: &turn.text,
            });
        }
        picked.push(ChatMessage {
            role: "system",
            content: &self.system_prompt,
        });
        picked.reverse();
        picked
    }

    async fn complete(&self, history: &[HistoryTurn]) -> Result<String, LlmError> {
        let request = ChatRequest {
            model: &self.model,
            messages: self.messages(history),
            temperature: self.temperature,
            max_tokens: self.max_tokens,
        };
        let mut call = self.http.post(&self.url).json(&request);
        let key = self.api_key.expose_secret();
        if !key.is_empty() {
            call = call.bearer_auth(key);
        }
        let classify = |e: reqwest::Error| {
            if e.is_timeout() {
                LlmError::Timeout(e)
            } else {
                LlmError::Network(e)
            }
        };
        let response = call.send().await.map_err(classify)?;
        let status = response.status();
        if !status.is_success() {
            // Only the start is logged; reading stops there.
            let body = read_limited(response, 4096)
                .await
                .ok()
                .flatten()
                .map(|b| String::from_utf8_lossy(&b).chars().take(300).collect())
                .unwrap_or_default();
            return Err(LlmError::Status {
                status: status.as_u16(),
                body,
            });
        }
        let body = read_limited(response, MAX_RESPONSE_BYTES)
            .await
            .map_err(classify)?
            .ok_or(LlmError::TooLarge {
                limit: MAX_RESPONSE_BYTES,
            })?;
        let parsed: ChatResponse =
            serde_json::from_slice(&body).map_err(|e| LlmError::Decode(e.to_string()))?;
        parsed
            .choices
            .into_iter()
            .next()
            .and_then(|c| c.message.content)
            .map(|c| c.trim().to_string())
            .filter(|c| !c.is_empty())
            .ok_or(LlmError::Empty)
    }
}

#[async_trait]
impl Responder for OpenAiResponder {
    async fn respond(&self, input: ResponderInput<'_>) -> Reply {
        if matches!(
            input.message.content,
            MessageContent::Reaction { .. } | MessageContent::System { .. }
        ) {
            return Reply::nothing();
        }
        let started = std::time::Instant::now();
        match self.complete(input.history).await {
            Ok(text) => {
                tracing::debug!(
                    elapsed_ms = started.elapsed().as_millis() as u64,
                    "model answered"
                );
                Reply::text(text)
            }
            Err(error) => {
                tracing::warn!(
                    wamid = %input.message.id,
                    elapsed_ms = started.elapsed().as_millis() as u64,
                    error = %error_chain(&error),
                    "model call failed; answering with the fallback text"
                );
                Reply::text(self.texts.get(input.language, Sentence::Fallback))
            }
        }
    }

    fn help(&self, language: Language) -> String {
        self.texts.get(language, Sentence::Help).to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn turn(speaker: Speaker, text: &str) -> HistoryTurn {
        HistoryTurn {
            speaker,
            text: text.into(),
            kind: "text".into(),
            at: 0,
            rate_limited: false,
        }
    }

    fn settings(base_url: &str) -> OpenAiSettings {
        OpenAiSettings {
            base_url: base_url.into(),
            model: "m".into(),
            api_key: SecretString::from(""),
            system_prompt: "sys".into(),
            temperature: 0.0,
            max_tokens: 10,
            timeout_ms: 5000,
            history_chars: 10,
            fallback: "fb".into(),
        }
    }

    #[tokio::test]
    async fn a_huge_model_answer_is_an_error() {
        use wiremock::{matchers::method, Mock, MockServer, ResponseTemplate};
        let llm = MockServer::start().await;
        let content = "x".repeat(2 * 1024 * 1024);
        Mock::given(method("POST"))
            .respond_with(ResponseTemplate::new(200).set_body_json(serde_json::json!({
                "choices": [{"message": {"role": "assistant", "content": content}}]
            })))
            .mount(&llm)
            .await;
        let responder =
            OpenAiResponder::new(&settings(&llm.uri()), Arc::default()).expect("client");
        let error = responder
            .complete(&[turn(Speaker::User, "hi")])
            .await
            .expect_err("too large");
        assert!(
            matches!(error, LlmError::TooLarge { limit } if limit == MAX_RESPONSE_BYTES),
            "{error}"
        );
    }

    #[test]
    fn history_is_bounded_by_characters_newest_kept() {
        let settings = OpenAiSettings {
            base_url: "http://x".into(),
            model: "m".into(),
            api_key: SecretString::from(""),
            system_prompt: "sys".into(),
            temperature: 0.0,
            max_tokens: 10,
            timeout_ms: 1000,
            history_chars: 10,
            fallback: "fb".into(),
        };
        let responder = OpenAiResponder::new(&settings, Arc::default()).expect("client");
        let history = [
            turn(Speaker::User, "aaaaaaaa"),
            turn(Speaker::Operator, "bbbb"),
            turn(Speaker::User, "cccc"),
        ];
        let messages = responder.messages(&history);
        assert_eq!(
            messages,
            vec![
                ChatMessage {
                    role: "system",
                    content: "sys"
                },
                ChatMessage {
                    role: "assistant",
                    content: "bbbb"
                },
                ChatMessage {
                    role: "user",
                    content: "cccc"
                },
            ]
        );
    }
}
