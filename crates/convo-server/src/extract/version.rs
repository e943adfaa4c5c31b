//! `Accept` and `Nex-Api-Version`: which variant of the API a request asked for (CONTRACT §1,
//! §4 and §7), the first check of every API route.

use crate::AppState;
use crate::error::ApiError;
use axum::extract::FromRequestParts;
use axum::http::HeaderMap;
use axum::http::header::ACCEPT;
use axum::http::request::Parts;

const VENDOR_TYPE: &str = "application/vnd.nexhealth+json";

/// Which variant of the API a request asked for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ApiVersion {
    /// Version 2: page numbers and `count` (CONTRACT §3).
    V2,
    /// `Nex-Api-Version: v20240412` (alias `v3.0.0`): cursors and `page_info` on the list
    /// (CONTRACT §4); every other endpoint answers as in version 2.
    Cursor,
}

/// The `Accept` rules of CONTRACT §1 and §7: a vendor media range selects a version (only 2 is
/// served); anything else is version 2 unless the server is strict. `Nex-Api-Version` selects
/// the cursor variant; other values of it are ignored.
pub fn check_version(headers: &HeaderMap, strict: bool) -> Result<ApiVersion, ApiError> {
    let variant = match headers.get("nex-api-version") {
        Some(v) => {
            let v = v.to_str().unwrap_or("").trim();
            if v.eq_ignore_ascii_case("v20240412") || v.eq_ignore_ascii_case("v3.0.0") {
                ApiVersion::Cursor
            } else {
                ApiVersion::V2
            }
        }
        None => ApiVersion::V2,
    };
    let mut vendor_version: Option<Option<String>> = None;
    'headers: for value in headers.get_all(ACCEPT) {
        let Ok(text) = value.to_str() else { continue };
        for range in text.split(',') {
            let mut parts = range.split(';');
            let media = parts.next().unwrap_or("").trim();
            if !media.eq_ignore_ascii_case(VENDOR_TYPE) {
                continue;
            }
            let version = parts.find_map(|p| {
                let (name, value) = p.split_once('=')?;
                name.trim()
                    .eq_ignore_ascii_case("version")
                    .then(|| value.trim().trim_matches('"').to_string())
            });
            vendor_version = Some(version);
            break 'headers;
        }
    }
    match vendor_version {
        Some(Some(v)) if v != "2" => Err(ApiError::NotFound(format!(
            "API version {v} is not served; ask for application/vnd.Nexhealth+json;version=2"
        ))),
        Some(_) => Ok(variant),
        None if strict => Err(ApiError::NotFound(
            "send Accept: application/vnd.Nexhealth+json;version=2".into(),
        )),
        None => Ok(variant),
    }
}

/// Extracted first, so a version that is not served answers 404 before anything else.
impl FromRequestParts<AppState> for ApiVersion {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        check_version(&parts.headers, state.config.strict_version)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn with_accept(values: &[&str]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for v in values {
            h.append(ACCEPT, HeaderValue::from_str(v).expect("header"));
        }
        h
    }

    #[test]
    fn accept_rules() {
        let ok = |v: &[&str], strict| check_version(&with_accept(v), strict).is_ok();
        assert!(ok(&[], false));
        assert!(!ok(&[], true));
        assert!(ok(&["*/*"], false));
        assert!(!ok(&["application/json"], true));
        assert!(ok(&["application/vnd.Nexhealth+json;version=2"], true));
        assert!(ok(&["APPLICATION/VND.NEXHEALTH+JSON; version=\"2\""], true));
        assert!(ok(&["application/vnd.Nexhealth+json"], true));
        assert!(!ok(&["application/vnd.Nexhealth+json;version=3"], false));
        assert!(!ok(&["application/vnd.Nexhealth+json;version=20"], false));
        assert!(!ok(
            &["text/html, application/vnd.nexhealth+json;q=0.9;version=1"],
            false
        ));
        assert!(ok(
            &["text/html", "application/vnd.nexhealth+json;version=2"],
            true
        ));
    }
}
