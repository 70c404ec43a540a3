//! Console sign-in state: session ids and CSRF tokens (random, 256 bits), the cookies that carry
//! them, and the constant-time checks.

use actix_web::HttpRequest;

/// The session cookie: a random id whose SHA-256 names the session in Redis.
pub const SESSION_COOKIE: &str = "wabot_console";
/// Before sign-in: the double-submit CSRF token of the sign-in form.
pub const SIGN_IN_COOKIE: &str = "wabot_console_signin";
/// How long a sign-in form stays usable.
pub const SIGN_IN_FORM_SECS: u64 = 600;
/// The failure budget the admin API shares (`http::client`).
pub use crate::http::client::{
    FAILURE_WINDOW_SECS as SIGN_IN_WINDOW_SECS, MAX_FAILURES as MAX_FAILED_SIGN_INS,
};

/// 32 random bytes from the thread's CSPRNG, as 64 hex digits.
pub fn random_token() -> String {
    hex::encode(rand::random::<[u8; 32]>())
}

/// A cookie value as we issue them: exactly 64 hex digits. Anything else is ignored, so a
/// forged cookie never reaches Redis as a key.
fn well_formed(value: &str) -> bool {
    value.len() == 64 && value.bytes().all(|b| b.is_ascii_hexdigit())
}

/// The value of cookie `name`, when well formed.
pub fn cookie(request: &HttpRequest, name: &str) -> Option<String> {
    request
        .headers()
        .get_all(actix_web::http::header::COOKIE)
        .filter_map(|v| v.to_str().ok())
        .flat_map(|header| header.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(key, value)| *key == name && well_formed(value))
        .map(|(_, value)| value.to_string())
}

/// Whether the browser reached us over TLS (directly, or through a proxy that says so with
/// `X-Forwarded-Proto` / `Forwarded`): then cookies are `Secure`.
pub fn over_tls(request: &HttpRequest) -> bool {
    request
        .connection_info()
        .scheme()
        .eq_ignore_ascii_case("https")
}

/// Whether cookies are `Secure`: always with `admin.secure_cookies` (the default: a header the
/// client writes itself must not decide it), else when the request came over TLS.
pub fn secure(request: &HttpRequest, always: bool) -> bool {
    always || over_tls(request)
}

/// A `Set-Cookie` value: HttpOnly, SameSite=Strict, scoped to the console, `Secure` when
/// `secure`. Without `max_age_secs` the browser keeps it until it closes (the session cookie:
/// how long a session lives unused is up to Redis, whose TTL each use restarts).
pub fn set_cookie(secure: bool, name: &str, value: &str, max_age_secs: Option<u64>) -> String {
    let secure = if secure { "; Secure" } else { "" };
    let max_age = max_age_secs.map_or(String::new(), |secs| format!("; Max-Age={secs}"));
    format!("{name}={value}; Path=/console{max_age}; HttpOnly; SameSite=Strict{secure}")
}

/// A `Set-Cookie` value that removes cookie `name`.
pub fn clear_cookie(secure: bool, name: &str) -> String {
    set_cookie(secure, name, "", Some(0))
}

/// Constant-time equality of a presented token with the expected one (over their digests, so
/// not even the length shows); empty never matches.
pub fn tokens_match(presented: Option<&str>, expected: &str) -> bool {
    presented.is_some_and(|presented| crate::http::secret::tokens_match(presented, expected))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_256_bit_and_distinct() {
        let a = random_token();
        assert!(well_formed(&a), "{a}");
        assert_ne!(a, random_token());
    }

    #[test]
    fn token_comparison_needs_equal_non_empty_tokens() {
        assert!(tokens_match(Some("abc"), "abc"));
        assert!(!tokens_match(Some("abd"), "abc"));
        assert!(!tokens_match(Some("ab"), "abc"));
        assert!(!tokens_match(None, "abc"));
        assert!(!tokens_match(Some(""), ""));
    }

    #[test]
    fn cookies_are_read_only_when_well_formed() {
        let id = random_token();
        let request = actix_web::test::TestRequest::default()
            .insert_header(("Cookie", format!("other=1; {SESSION_COOKIE}={id}")))
            .to_http_request();
        assert_eq!(cookie(&request, SESSION_COOKIE), Some(id));
        let forged = actix_web::test::TestRequest::default()
            .insert_header(("Cookie", format!("{SESSION_COOKIE}=*")))
            .to_http_request();
        assert_eq!(cookie(&forged, SESSION_COOKIE), None);
    }

    #[test]
    fn cookies_are_secure_always_or_without_the_setting_behind_a_tls_proxy() {
        let plain = actix_web::test::TestRequest::default().to_http_request();
        let proxied = actix_web::test::TestRequest::default()
            .insert_header(("X-Forwarded-Proto", "https"))
            .to_http_request();
        // `admin.secure_cookies` (the default): whatever the request says.
        assert!(secure(&plain, true) && secure(&proxied, true));
        // Off: only when a proxy says the browser used TLS.
        assert!(!secure(&plain, false) && secure(&proxied, false));
        let cookie = set_cookie(false, SESSION_COOKIE, "x", None);
        assert!(cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict"));
        assert!(!cookie.contains("Secure") && !cookie.contains("Max-Age"));
        assert!(set_cookie(true, SESSION_COOKIE, "x", Some(60)).ends_with("; Secure"));
    }
}
