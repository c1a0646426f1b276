//! Property tests: whatever the validators accept cannot break out of a DNS
//! label, an HTTP header value or a line of a config file.
#![allow(clippy::unwrap_used)] // a test or a tool: a failure should stop it loudly

use std::collections::BTreeMap;

use pilotlight_core::model::{Domain, EnvVars, FunctionName, FunctionSpecInput, HealthPath, ImageRef, Region};
use proptest::prelude::*;

/// Characters an attacker would try: config syntax, quoting, line breaks, NUL,
/// unicode lookalikes (Cyrillic а, fullwidth ；, zero-width space, RTL override).
fn hostile() -> impl Strategy<Value = String> {
    let pieces = prop::sample::select(vec![
        "a", "z", "0", "9", "-", ".", "_", ";", "}", "{", "\n", "\r", "\0", "$", "\"", "'", "#", " ", "\t", "/", ":",
        "@", "\\", "а", "；", "\u{200b}", "\u{202e}", "A", "Z", "é", "%", "?", "=", "&", "~",
    ]);
    prop::collection::vec(pieces, 0..80).prop_map(|v| v.concat())
}

fn any_text() -> impl Strategy<Value = String> {
    prop_oneof![hostile(), any::<String>(), "[a-z0-9-]{1,70}"]
}

const CONFIG_METACHARS: &[char] = &[';', '{', '}', '$', '"', '\'', '#', ' ', '\\', '\n', '\r', '\0', '\t'];

fn is_dns_label(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !s.starts_with('-')
        && !s.ends_with('-')
}

/// RFC 9110 field-value: visible ASCII, space and tab; here we also refuse anything non-ASCII.
fn is_header_safe(s: &str) -> bool {
    s.bytes().all(|b| b == b'\t' || (0x20..0x7f).contains(&b))
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    #[test]
    fn accepted_names_are_dns_labels(s in any_text()) {
        if let Ok(n) = FunctionName::new(s.clone()) {
            prop_assert!(is_dns_label(n.as_str()));
            prop_assert_eq!(n.as_str(), s.as_str());
        }
        if let Ok(r) = Region::new(s.clone()) {
            prop_assert!(is_dns_label(r.as_str()));
        }
    }

    #[test]
    fn accepted_domains_are_dotted_labels_and_hosts_stay_hosts(name in any_text(), domain in any_text()) {
        if let (Ok(n), Ok(d)) = (FunctionName::new(name), Domain::new(domain)) {
            prop_assert!(d.as_str().split('.').all(is_dns_label));
            let host = d.host_for(&n);
            prop_assert!(host.len() <= 63 + 1 + 253);
            prop_assert!(is_header_safe(&host));
            prop_assert!(!host.contains(CONFIG_METACHARS));
        }
    }

    #[test]
    fn accepted_images_and_paths_have_no_config_metacharacters(s in any_text()) {
        if let Ok(i) = ImageRef::new(&s) {
            prop_assert!(is_header_safe(&i.to_string()));
            prop_assert!(!i.to_string().contains(CONFIG_METACHARS));
            prop_assert_eq!(i.to_string(), s.clone());
        }
        if let Ok(p) = HealthPath::parse_field("health_path", &s) {
            prop_assert!(is_header_safe(p.as_str()));
            prop_assert!(!p.as_str().contains(CONFIG_METACHARS));
        }
    }

    #[test]
    fn accepted_env_values_stay_on_one_line(key in any_text(), value in any_text()) {
        if let Ok(env) = EnvVars::new(BTreeMap::from([(key, value)])) {
            for (k, v) in env.iter() {
                prop_assert!(k.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_'));
                prop_assert!(!v.contains(['\n', '\r', '\0']));
                prop_assert!(!v.chars().any(|c| c.is_control() && c != '\t'));
            }
        }
    }

    #[test]
    fn the_spec_validator_never_panics_and_round_trips(name in any_text(), image in any_text(), port in any::<i64>()) {
        if let Ok(spec) = FunctionSpecInput::image(&name, &image, port).validate() {
            prop_assert!(is_dns_label(spec.name().as_str()));
            prop_assert!((1..=65535).contains(&i64::from(spec.port().get())));
            let json = serde_json::to_string(&spec).unwrap();
            let back: pilotlight_core::FunctionSpec = serde_json::from_str(&json).unwrap();
            prop_assert_eq!(back, spec);
        }
    }
}
