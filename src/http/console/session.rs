//! Console sign-in state: session ids and CSRF tokens (random, 256 bits), the cookies that carry
//! them, and the constant-time checks.

use actix_web::HttpRequest;

/// The session cookie: a random id whose SHA-256 names the session in Redis.
pub const SESSION_COOKIE: &str = "wabot_console";
/// Before sign-in: the double-submit CSRF token of the sign-in form.
pub const SIGN_IN_COOKIE: &str = "wabot_console_signin";
/// How long a sign-in form stays usable.
pub const SIGN_IN_FORM_SECS: u64 = 600;
/// Failed sign-ins a client may make per window before it is refused without a check.
pub const MAX_FAILED_SIGN_INS: u64 = 10;
pub const SIGN_IN_WINDOW_SECS: u64 = 15 * 60;

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

/// A `Set-Cookie` value: HttpOnly, SameSite=Strict, scoped to the console, `Secure` over TLS.
/// Without `max_age_secs` the browser keeps it until it closes (the session cookie: how long a
/// session lives unused is up to Redis, whose TTL each use restarts).
pub fn set_cookie(
    request: &HttpRequest,
    name: &str,
    value: &str,
    max_age_secs: Option<u64>,
) -> String {
    let secure = if over_tls(request) { "; Secure" } else { "" };
    let max_age = max_age_secs.map_or(String::new(), |secs| format!("; Max-Age={secs}"));
    format!("{name}={value}; Path=/console{max_age}; HttpOnly; SameSite=Strict{secure}")
}

/// A `Set-Cookie` value that removes cookie `name`.
pub fn clear_cookie(request: &HttpRequest, name: &str) -> String {
    set_cookie(request, name, "", Some(0))
}

/// Constant-time equality of a presented token with the expected one (over their digests, so
/// not even the length shows); empty never matches.
pub fn tokens_match(presented: Option<&str>, expected: &str) -> bool {
    presented.is_some_and(|presented| crate::http::secret::tokens_match(presented, expected))
}

/// Who a sign-in comes from, for the failure count: the peer address (not a forwarded header,
/// which the client writes itself); an IPv6 address by its /64, which one host usually holds
/// whole (a budget per /128 would be one per address it picks).
pub fn client_key(request: &HttpRequest) -> String {
    request
        .peer_addr()
        .map(|a| client_of(a.ip()))
        .unwrap_or_else(|| "unknown".into())
}

fn client_of(ip: std::net::IpAddr) -> String {
    match ip {
        std::net::IpAddr::V6(v6) if v6.to_ipv4_mapped().is_none() => {
            let s = v6.segments();
            format!("{:x}:{:x}:{:x}:{:x}::/64", s[0], s[1], s[2], s[3])
        }
        std::net::IpAddr::V6(v6) => v6
            .to_ipv4_mapped()
            .map_or(ip.to_string(), |v4| v4.to_string()),
        std::net::IpAddr::V4(v4) => v4.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ipv6_clients_count_by_their_64() {
        let ip = |s: &str| s.parse::<std::net::IpAddr>().expect("ip");
        assert_eq!(client_of(ip("2001:db8:1:2:aaaa::1")), "2001:db8:1:2::/64");
        assert_eq!(
            client_of(ip("2001:db8:1:2:ffff:1:2:3")),
            client_of(ip("2001:db8:1:2::9"))
        );
        assert_ne!(
            client_of(ip("2001:db8:1:3::1")),
            client_of(ip("2001:db8:1:2::1"))
        );
        assert_eq!(client_of(ip("203.0.113.7")), "203.0.113.7");
        assert_eq!(client_of(ip("::ffff:203.0.113.7")), "203.0.113.7");
    }

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
    fn cookies_are_secure_behind_a_tls_proxy_only() {
        let plain = actix_web::test::TestRequest::default().to_http_request();
        let cookie = set_cookie(&plain, SESSION_COOKIE, "x", None);
        assert!(cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict"));
        assert!(!cookie.contains("Secure") && !cookie.contains("Max-Age"));
        let proxied = actix_web::test::TestRequest::default()
            .insert_header(("X-Forwarded-Proto", "https"))
            .to_http_request();
        assert!(set_cookie(&proxied, SESSION_COOKIE, "x", Some(60)).ends_with("; Secure"));
    }
}
