//! TwiML answers (`text/xml`) for Twilio's webhooks, errors included, so Twilio's debugger shows
//! the reason.

use axum::http::header::CONTENT_TYPE;
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};

/// A TwiML answer: a confirmation `<Message>` to the sender, or a comment naming a problem
/// (our own text only, never echoed input).
pub fn twiml(status: StatusCode, message: Option<&str>, problem: Option<&str>) -> Response {
    let mut xml = String::from(r#"<?xml version="1.0" encoding="UTF-8"?>"#);
    match (message, problem) {
        (Some(m), _) => {
            xml.push_str("<Response><Message>");
            xml.push_str(m);
            xml.push_str("</Message></Response>");
        }
        (None, Some(p)) => {
            xml.push_str("<Response><!-- ");
            xml.push_str(&p.replace("--", "- -"));
            xml.push_str(" --></Response>");
        }
        (None, None) => xml.push_str("<Response/>"),
    }
    let mut response = (status, xml).into_response();
    response.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/xml; charset=utf-8"),
    );
    response
}

pub fn problem(status: StatusCode, text: &str) -> Response {
    twiml(status, None, Some(text))
}
