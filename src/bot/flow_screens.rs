//! WhatsApp Flows answered without a backend: the screens a rules file declares (`[[flow]]`),
//! chosen by the flow token's prefix, with the submitted answers (`${form.day}`) and the token
//! (`${token}`) put into the next screen's data or the completed flow's parameters.

use serde::Deserialize;
use serde_json::{json, Map, Value};

/// The screen Meta closes a flow on; its `extension_message_response.params` come back in
/// the `nfm_reply`.
const SUCCESS: &str = "SUCCESS";

#[derive(Debug, Deserialize)]
struct FlowsFile {
    #[serde(default, rename = "flow")]
    flows: Vec<FlowSpec>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct FlowSpec {
    /// Requests whose flow token is this or starts with it and a dot (`booking.34612345678`).
    token: String,
    /// The first screen (`INIT`), and the screen `BACK` returns to unless `back` says otherwise.
    init: ScreenSpec,
    /// What a screen's submission (`data_exchange` from `screen`) leads to.
    #[serde(default)]
    on: Vec<StepSpec>,
    /// `BACK` from a screen: which screen and data to show.
    #[serde(default)]
    back: Vec<StepSpec>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct ScreenSpec {
    screen: String,
    #[serde(default)]
    data: Option<toml::Value>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct StepSpec {
    /// The screen the request comes from.
    screen: String,
    /// The screen to show next (not with `complete`).
    #[serde(default)]
    next: Option<String>,
    #[serde(default)]
    data: Option<toml::Value>,
    /// Closes the flow; `params` (with the token) come back in its `nfm_reply`.
    #[serde(default)]
    complete: bool,
    #[serde(default)]
    params: Option<toml::Value>,
}

#[derive(Debug, thiserror::Error)]
#[error("the rules file's flows: {0}")]
pub struct FlowScreensError(String);

/// The declared flows.
#[derive(Debug, Clone, Default)]
pub struct FlowScreens {
    flows: Vec<FlowSpec>,
}

impl FlowScreens {
    /// The `[[flow]]` tables of a rules file (the rest of it is the rules responder's).
    pub fn parse(text: &str) -> Result<FlowScreens, FlowScreensError> {
        let file: FlowsFile =
            toml::from_str(text).map_err(|e| FlowScreensError(e.message().to_string()))?;
        for flow in &file.flows {
            let bad = |why: &str| FlowScreensError(format!("flow `{}`: {why}", flow.token));
            if flow.token.trim().is_empty() {
                return Err(FlowScreensError("a flow needs a `token`".into()));
            }
            for step in &flow.on {
                match (&step.next, step.complete) {
                    (Some(_), true) => {
                        return Err(bad("a step has both `next` and `complete`"));
                    }
                    (None, false) => {
                        return Err(bad(&format!(
                            "the step from `{}` needs `next` or `complete = true`",
                            step.screen
                        )))
                    }
                    _ => {}
                }
            }
            if flow.back.iter().any(|b| b.next.is_none()) {
                return Err(bad("a `back` step needs `next`"));
            }
        }
        Ok(FlowScreens { flows: file.flows })
    }

    /// The flows of the rules file at `path`; none when it does not exist.
    pub fn load(path: &str) -> Result<FlowScreens, FlowScreensError> {
        match std::fs::read_to_string(path) {
            Ok(text) => FlowScreens::parse(&text),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(FlowScreens::default()),
            Err(e) => Err(FlowScreensError(format!("{path}: {e}"))),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.flows.is_empty()
    }

    /// The answer to a decrypted request (`INIT`, `BACK`, `data_exchange`) of a declared flow;
    /// `None` when no declared flow has its token (or the step is not declared).
    pub fn answer(&self, request: &Value) -> Option<Value> {
        let token = request["flow_token"].as_str().unwrap_or_default();
        let flow = self.flows.iter().find(|f| {
            token == f.token
                || token
                    .strip_prefix(f.token.as_str())
                    .is_some_and(|rest| rest.starts_with('.'))
        })?;
        let screen = request["screen"].as_str().unwrap_or_default();
        let form = request.get("data").cloned().unwrap_or(Value::Null);
        let fill = |value: &Option<toml::Value>| {
            let value = value
                .clone()
                .and_then(|v| serde_json::to_value(v).ok())
                .unwrap_or_else(|| json!({}));
            filled(&value, token, &form)
        };
        let show = |screen: &str, data: &Option<toml::Value>| {
            Some(json!({"screen": screen, "data": fill(data)}))
        };
        match request["action"].as_str().unwrap_or_default() {
            "INIT" => show(&flow.init.screen, &flow.init.data),
            "BACK" => match flow.back.iter().find(|b| b.screen == screen) {
                Some(step) => show(step.next.as_deref()?, &step.data),
                None => show(&flow.init.screen, &flow.init.data),
            },
            "data_exchange" => {
                let step = flow.on.iter().find(|s| s.screen == screen)?;
                if step.complete {
                    let mut params = match fill(&step.params) {
                        Value::Object(map) => map,
                        _ => Map::new(),
                    };
                    params.insert("flow_token".into(), json!(token));
                    return Some(json!({"screen": SUCCESS, "data": {
                        "extension_message_response": {"params": params}
                    }}));
                }
                show(step.next.as_deref()?, &step.data)
            }
            _ => None,
        }
    }
}

/// `value` with `${token}` and `${form.<field>}` replaced: a string that is only a placeholder
/// takes the submitted value as it is (a list stays a list); inside a longer string it is
/// written out.
fn filled(value: &Value, token: &str, form: &Value) -> Value {
    let lookup = |name: &str| -> Option<Value> {
        match name {
            "token" => Some(json!(token)),
            _ => name
                .strip_prefix("form.")
                .map(|field| form.get(field).cloned().unwrap_or(Value::Null)),
        }
    };
    match value {
        Value::String(text) => {
            if let Some(whole) = text
                .strip_prefix("${")
                .and_then(|t| t.strip_suffix('}'))
                .filter(|name| !name.contains('}'))
            {
                if let Some(found) = lookup(whole) {
                    return found;
                }
            }
            let mut out = String::new();
            let mut rest = text.as_str();
            while let Some(start) = rest.find("${") {
                out.push_str(&rest[..start]);
                let after = &rest[start + 2..];
                match after.find('}') {
                    Some(end) => {
                        match lookup(&after[..end]) {
                            Some(Value::String(s)) => out.push_str(&s),
                            Some(Value::Null) => {}
                            Some(other) => out.push_str(&other.to_string()),
                            None => out.push_str(&rest[start..start + 3 + end]),
                        }
                        rest = &after[end + 1..];
                    }
                    None => {
                        out.push_str(&rest[start..]);
                        rest = "";
                    }
                }
            }
            out.push_str(rest);
            Value::String(out)
        }
        Value::Array(items) => Value::Array(items.iter().map(|v| filled(v, token, form)).collect()),
        Value::Object(map) => Value::Object(
            map.iter()
                .map(|(k, v)| (k.clone(), filled(v, token, form)))
                .collect(),
        ),
        other => other.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const BOOKING: &str = r#"
[[rule]]
name = "ignored here"
keywords = ["book"]
reply = "x"

[[flow]]
token = "booking"
init = { screen = "DETAILS", data = { days = ["Tuesday", "Wednesday"] } }

[[flow.on]]
screen = "DETAILS"
next = "CONFIRM"
data = { day = "${form.day}", summary = "${form.day} at ${form.time}" }

[[flow.on]]
screen = "CONFIRM"
complete = true
params = { day = "${form.day}", time = "${form.time}" }

[[flow.back]]
screen = "CONFIRM"
next = "DETAILS"
data = { days = ["Tuesday", "Wednesday"] }
"#;

    #[test]
    fn a_declared_flow_walks_its_screens_and_completes_with_the_answers() {
        let screens = FlowScreens::parse(BOOKING).expect("parses");
        let init = screens
            .answer(&json!({"action": "INIT", "flow_token": "booking.34612345678"}))
            .expect("answered");
        assert_eq!(
            init,
            json!({"screen": "DETAILS", "data": {"days": ["Tuesday", "Wednesday"]}})
        );
        let next = screens
            .answer(
                &json!({"action": "data_exchange", "flow_token": "booking.34612345678",
                "screen": "DETAILS", "data": {"day": "Tuesday", "time": "10:30"}}),
            )
            .expect("answered");
        assert_eq!(
            next,
            json!({"screen": "CONFIRM", "data": {"day": "Tuesday", "summary": "Tuesday at 10:30"}})
        );
        let back = screens
            .answer(&json!({"action": "BACK", "flow_token": "booking", "screen": "CONFIRM"}))
            .expect("answered");
        assert_eq!(back["screen"], "DETAILS");
        let done = screens
            .answer(
                &json!({"action": "data_exchange", "flow_token": "booking.34612345678",
                "screen": "CONFIRM", "data": {"day": "Tuesday", "time": "10:30"}}),
            )
            .expect("answered");
        assert_eq!(
            done,
            json!({"screen": "SUCCESS", "data": {"extension_message_response": {"params": {
                "flow_token": "booking.34612345678", "day": "Tuesday", "time": "10:30"}}}})
        );
    }

    #[test]
    fn other_tokens_and_undeclared_steps_are_not_answered() {
        let screens = FlowScreens::parse(BOOKING).expect("parses");
        for request in [
            json!({"action": "INIT", "flow_token": "bookings.1"}),
            json!({"action": "INIT", "flow_token": "other"}),
            json!({"action": "data_exchange", "flow_token": "booking", "screen": "NOWHERE"}),
            json!({"action": "INIT"}),
        ] {
            assert_eq!(screens.answer(&request), None, "{request}");
        }
    }

    #[test]
    fn a_step_without_a_destination_is_refused_at_load() {
        let error = FlowScreens::parse(
            "[[flow]]\ntoken = \"t\"\ninit = { screen = \"A\" }\n[[flow.on]]\nscreen = \"A\"\n",
        )
        .expect_err("refused");
        assert!(
            error.to_string().contains("needs `next` or `complete"),
            "{error}"
        );
        assert!(
            FlowScreens::parse("[[flow]]\ntoken = \"t\"\n").is_err(),
            "init is required"
        );
        assert!(FlowScreens::parse("").expect("no flows").is_empty());
    }

    #[test]
    fn placeholders_keep_the_submitted_type_and_leave_unknown_ones() {
        let form = json!({"n": 3, "tags": ["a"]});
        assert_eq!(filled(&json!("${form.n}"), "t", &form), json!(3));
        assert_eq!(filled(&json!("${form.tags}"), "t", &form), json!(["a"]));
        assert_eq!(
            filled(&json!("n=${form.n};${x}"), "t", &form),
            json!("n=3;${x}")
        );
        assert_eq!(filled(&json!("${token}"), "tok", &form), json!("tok"));
        assert_eq!(filled(&json!("${form.missing}"), "t", &form), Value::Null);
    }
}
