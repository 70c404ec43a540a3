//! The `openai` responder: any OpenAI-compatible Chat Completions endpoint (OpenAI, Ollama, vLLM,
//! llama.cpp, Groq...). The conversation history becomes the chat messages; configured tools are
//! offered as functions and the model's `tool_calls` executed (POSTed to each tool's URL, signed),
//! their results fed back, for a bounded number of rounds and time; an `actions` tool lets the
//! model send buttons, lists, media or hand off. On an error, a timeout or a cut tool loop the
//! fallback text is answered and the cause is logged.

use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use base64::Engine as _;
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use super::{Action, HistoryTurn, Speaker};
use super::{Reply, Responder, ResponderInput};
use crate::bot::i18n::{Language, Sentence, Texts};
use crate::config::{OpenAiSettings, ToolSettings};
use crate::domain::action::wire::{into_actions, WireAction};
use crate::domain::{InboundMessage, MessageContent};
use crate::meta::cloud_api::read_limited;
use crate::ops::telemetry::error_chain;

/// The built-in tool that turns its arguments into reply actions.
const ACTIONS_TOOL: &str = "actions";
/// What a tool's answer may weigh, and how much of it the model sees.
const MAX_TOOL_ANSWER_BYTES: usize = 256 * 1024;
const MAX_TOOL_RESULT_CHARS: usize = 16 * 1024;

pub struct OpenAiResponder {
    http: reqwest::Client,
    url: String,
    model: String,
    api_key: SecretString,
    system_prompt: String,
    temperature: f32,
    max_tokens: u32,
    history_chars: usize,
    tools: Vec<ToolSettings>,
    max_tool_rounds: u32,
    tool_timeout: Duration,
    tools_deadline: Duration,
    tool_secret: SecretString,
    actions_tool: bool,
    vision: bool,
    /// `responder.openai.fallback` is folded into these (see `i18n::Texts::from_settings`).
    texts: Arc<Texts>,
}

#[derive(Debug, Serialize)]
struct ChatRequest<'a> {
    model: &'a str,
    messages: &'a [Value],
    temperature: f32,
    max_tokens: u32,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    tools: Vec<Value>,
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
    /// Kept as sent, to be echoed back in the next round.
    #[serde(default)]
    tool_calls: Vec<Value>,
}

/// Tool calls run per answer of the model; the rest are answered "not run" (the model needs a
/// result for each id it sent).
const MAX_CALLS_PER_ROUND: usize = 8;

#[derive(Debug, thiserror::Error)]
enum LlmError {
    #[error("the model endpoint did not answer in time")]
    Timeout(#[source] reqwest::Error),
    #[error("could not reach the model endpoint")]
    Network(#[source] reqwest::Error),
    // The length, not the body: an error can quote the prompt, the user's words.
    #[error("the model endpoint answered HTTP {status} ({bytes} bytes)")]
    Status { status: u16, bytes: usize },
    #[error("the model answer has no text")]
    Empty,
    #[error("the model answer is larger than {limit} bytes")]
    TooLarge { limit: usize },
    #[error("the model answer is not a chat completion: {0}")]
    Decode(String),
    #[error("the model kept calling tools after {rounds} rounds; cut")]
    ToolLoop { rounds: u32 },
    #[error("the tool calls took longer than {0:?}; cut")]
    ToolDeadline(Duration),
}

/// Largest chat completion read; `max_tokens` keeps real ones far below.
const MAX_RESPONSE_BYTES: usize = 1024 * 1024;

/// An image the user sent, for a vision model.
pub struct Image<'a> {
    pub bytes: &'a [u8],
    pub mime_type: &'a str,
}

impl OpenAiResponder {
    pub fn new(
        settings: &OpenAiSettings,
        texts: Arc<Texts>,
    ) -> Result<OpenAiResponder, reqwest::Error> {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_millis(settings.timeout_ms))
            .connect_timeout(Duration::from_secs(5))
            // A redirect would re-send the body (signed, or the user's words) and its
            // credentials to wherever the Location points.
            .redirect(reqwest::redirect::Policy::none())
            // See the HTTP responder: one HTTP/1.1 connection per call in flight.
            .http1_only()
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
            tools: settings.tools.clone(),
            max_tool_rounds: settings.max_tool_rounds,
            tool_timeout: Duration::from_millis(settings.tool_timeout_ms),
            tools_deadline: Duration::from_millis(settings.tools_deadline_ms),
            tool_secret: settings.tool_secret.clone(),
            actions_tool: settings.actions_tool,
            vision: settings.vision,
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

    /// The functions offered to the model, in OpenAI's `tools` format.
    fn tool_specs(&self) -> Vec<Value> {
        let mut specs: Vec<Value> = self
            .tools
            .iter()
            .map(|t| {
                json!({"type": "function", "function": {
                    "name": t.name, "description": t.description, "parameters": t.parameters
                }})
            })
            .collect();
        if self.actions_tool {
            specs.push(json!({"type": "function", "function": {
                "name": ACTIONS_TOOL,
                "description": "Send rich WhatsApp messages to the user besides your text: reply \
                    buttons (at most 3, titles up to 20 characters), a list (up to 10 rows, titles \
                    up to 24 characters), an image/document by https link, a location, or a \
                    handoff to a person of the business.",
                "parameters": {
                    "type": "object",
                    "properties": {"actions": {"type": "array", "items": {"type": "object", "description":
                        "One of: {type:'buttons', text, buttons:[{id,title}]}, {type:'list', text, button, sections:[{title, rows:[{id,title,description}]}]}, {type:'image'|'document', link, caption}, {type:'location', latitude, longitude, name}, {type:'handoff', note}"}}},
                    "required": ["actions"]
                }
            }}));
        }
        specs
    }

    async fn chat(&self, messages: &[Value], tools: Vec<Value>) -> Result<ChoiceMessage, LlmError> {
        let request = ChatRequest {
            model: &self.model,
            messages,
            temperature: self.temperature,
            max_tokens: self.max_tokens,
            tools,
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
            // Read up to a bound only to say how long it was.
            let bytes = read_limited(response, 4096)
                .await
                .ok()
                .flatten()
                .map_or(0, |b| b.len());
            return Err(LlmError::Status {
                status: status.as_u16(),
                bytes,
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
            .map(|c| c.message)
            .ok_or(LlmError::Empty)
    }

    /// The conversation, tool rounds included, down to the model's final answer.
    async fn converse(
        &self,
        message: &InboundMessage,
        history: &[HistoryTurn],
        language: Language,
        image: Option<Image<'_>>,
        replying_to: Option<&HistoryTurn>,
    ) -> Result<Reply, LlmError> {
        let mut messages: Vec<Value> = self
            .messages(history)
            .iter()
            .map(|m| json!({"role": m.role, "content": m.content}))
            .collect();
        // A quoted message is what "this one" or "yes, that" refers to.
        if let (Some(quoted), Some(last)) = (replying_to, messages.last_mut()) {
            let text = last["content"].as_str().unwrap_or_default().to_string();
            last["content"] = json!(replying_note(quoted, &text));
        }
        // Right after the business's prompt: the conversation's language, which a short "ok"
        // or a typed menu number does not give away to the model.
        messages.insert(
            1.min(messages.len()),
            json!({"role": "system", "content": language_note(language)}),
        );
        if let (Some(image), true, Some(last)) = (image, self.vision, messages.last_mut()) {
            let data = base64::engine::general_purpose::STANDARD.encode(image.bytes);
            let text = last["content"].as_str().unwrap_or_default().to_string();
            last["content"] = json!([
                {"type": "text", "text": text},
                {"type": "image_url", "image_url": {"url": format!("data:{};base64,{data}", image.mime_type)}}
            ]);
        }
        let specs = self.tool_specs();
        let started = Instant::now();
        let mut actions: Vec<Action> = Vec::new();
        for round in 0..=self.max_tool_rounds {
            let answer = self.chat(&messages, specs.clone()).await?;
            if answer.tool_calls.is_empty() {
                let text = answer
                    .content
                    .map(|c| c.trim().to_string())
                    .filter(|c| !c.is_empty());
                let mut reply: Vec<Action> = text.into_iter().map(Action::Text).collect();
                reply.append(&mut actions);
                if reply.is_empty() {
                    return Err(LlmError::Empty);
                }
                return Ok(Reply::of(reply));
            }
            if round == self.max_tool_rounds {
                return Err(LlmError::ToolLoop {
                    rounds: self.max_tool_rounds,
                });
            }
            if started.elapsed() >= self.tools_deadline {
                return Err(LlmError::ToolDeadline(self.tools_deadline));
            }
            messages.push(json!({
                "role": "assistant", "content": answer.content, "tool_calls": answer.tool_calls
            }));
            for (index, call) in answer.tool_calls.iter().enumerate() {
                let id = call["id"].as_str().unwrap_or_default().to_string();
                // Each call may take the tool's whole timeout: the deadline holds per call, and
                // a round asking for hundreds runs only the first few.
                if started.elapsed() >= self.tools_deadline {
                    return Err(LlmError::ToolDeadline(self.tools_deadline));
                }
                let result = if index < MAX_CALLS_PER_ROUND {
                    self.run_tool(call, message, &mut actions).await
                } else {
                    format!("not run: at most {MAX_CALLS_PER_ROUND} tool calls per answer")
                };
                messages.push(json!({"role": "tool", "tool_call_id": id, "content": result}));
            }
        }
        Err(LlmError::ToolLoop {
            rounds: self.max_tool_rounds,
        })
    }

    /// Runs one tool call; the result (or the error) as text for the model, which may recover.
    async fn run_tool(
        &self,
        call: &Value,
        message: &InboundMessage,
        actions: &mut Vec<Action>,
    ) -> String {
        let name = call["function"]["name"].as_str().unwrap_or_default();
        // OpenAI sends the arguments as a JSON string, some servers as an object.
        let arguments = match &call["function"]["arguments"] {
            Value::String(raw) => serde_json::from_str(raw).unwrap_or(Value::Null),
            other => other.clone(),
        };
        if name == ACTIONS_TOOL && self.actions_tool {
            let parsed = serde_json::from_value::<Vec<WireAction>>(arguments["actions"].clone())
                .map_err(|e| e.to_string())
                .and_then(|wire| into_actions(wire).map_err(|e| e.to_string()));
            return match parsed {
                Ok(mut more) => {
                    let count = more.len();
                    actions.append(&mut more);
                    json!({"ok": true, "queued": count}).to_string()
                }
                Err(error) => {
                    tracing::debug!(error = %error, "the model's actions were unusable");
                    json!({"error": format!("invalid actions: {error}")}).to_string()
                }
            };
        }
        let Some(tool) = self.tools.iter().find(|t| t.name == name) else {
            tracing::warn!(
                tool = name,
                "the model called a tool that is not configured"
            );
            return json!({"error": format!("unknown tool `{name}`")}).to_string();
        };
        let body = json!({
            "tool": name,
            "arguments": arguments,
            "contact": {"id": message.user.as_str(), "name": message.sender.profile_name},
            "conversation": {"phone_number_id": message.phone_number_id.as_str()},
        })
        .to_string()
        .into_bytes();
        let signature = crate::meta::webhook::sign(self.tool_secret.expose_secret(), &body);
        let started = Instant::now();
        let response = self
            .http
            .post(&tool.url)
            .timeout(self.tool_timeout)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .header(super::http::SIGNATURE_HEADER, signature)
            .body(body)
            .send()
            .await;
        let outcome = match response {
            Ok(response) => {
                let status = response.status();
                match read_limited(response, MAX_TOOL_ANSWER_BYTES).await {
                    Ok(Some(bytes)) if status.is_success() => Ok(String::from_utf8_lossy(&bytes)
                        .chars()
                        .take(MAX_TOOL_RESULT_CHARS)
                        .collect()),
                    Ok(Some(_)) => Err(format!("HTTP {}", status.as_u16())),
                    Ok(None) => Err("the answer is too large".to_string()),
                    Err(e) => Err(error_chain(&e)),
                }
            }
            Err(e) if e.is_timeout() => Err("timed out".to_string()),
            Err(e) => Err(error_chain(&e)),
        };
        let elapsed_ms = started.elapsed().as_millis() as u64;
        match outcome {
            Ok(result) => {
                tracing::debug!(tool = name, elapsed_ms, "tool answered");
                result
            }
            Err(error) => {
                tracing::warn!(tool = name, elapsed_ms, error = %error, "tool call failed; the model is told");
                json!({"error": error}).to_string()
            }
        }
    }
}

/// The user's message with the one it quotes: `(replying to the assistant: "…") text`.
fn replying_note(quoted: &HistoryTurn, text: &str) -> String {
    let who = match quoted.speaker {
        Speaker::User => "their own message",
        Speaker::Bot | Speaker::Operator => "the assistant",
    };
    let shown: String = quoted.text.chars().take(500).collect();
    format!("(replying to {who}: \"{shown}\") {text}")
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
        let image = input
            .image
            .map(|(bytes, mime_type)| Image { bytes, mime_type });
        match self
            .converse(
                input.message,
                input.history,
                input.language,
                image,
                input.replying_to,
            )
            .await
        {
            Ok(reply) => {
                tracing::debug!(
                    elapsed_ms = started.elapsed().as_millis() as u64,
                    actions = reply.actions.len(),
                    "model answered"
                );
                reply
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

    fn wants_images(&self) -> bool {
        self.vision
    }
}

/// The system note naming the conversation's language.
fn language_note(language: Language) -> String {
    let name = match language {
        Language::En => "English",
        Language::Es => "Spanish",
        Language::Pt => "Portuguese",
    };
    format!(
        "The conversation's language is {name} ({}). Answer in {name} unless the user's \
         latest message is clearly written in another language.",
        language.code()
    )
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
            tools: Vec::new(),
            max_tool_rounds: 2,
            tool_timeout_ms: 1000,
            tools_deadline_ms: 5000,
            tool_secret: SecretString::from(""),
            actions_tool: false,
            vision: false,
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
            .chat(&[json!({"role": "user", "content": "hi"})], Vec::new())
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
            timeout_ms: 1000,
            ..settings("http://x")
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
