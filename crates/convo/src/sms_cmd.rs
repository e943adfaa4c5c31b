//! `convo sms inbound`: what Twilio does when a patient texts a location, against a running
//! server: a signed form post to `/sms/inbound`.

use crate::CliError;
use crate::cli::InboundArgs;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

pub async fn inbound(args: &InboundArgs) -> Result<(), CliError> {
    let sid = match &args.sid {
        Some(s) => s.clone(),
        None => {
            let nanos = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos());
            format!("SMcli{nanos:x}{:x}", std::process::id())
        }
    };
    let params: Vec<(String, String)> = [
        ("From", args.from.as_str()),
        ("To", args.to.as_str()),
        ("Body", args.body.as_str()),
        ("MessageSid", sid.as_str()),
        ("NumMedia", "0"),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    let base = args.url.trim_end_matches('/');
    let signed_base = args
        .public_url
        .as_deref()
        .map_or(base, |u| u.trim_end_matches('/'));
    let signature = convo_server::twilio::signature(
        args.twilio_auth_token.expose(),
        &format!("{signed_base}/sms/inbound"),
        &params,
    );
    let body = form_urlencoded::Serializer::new(String::new())
        .extend_pairs(params.iter())
        .finish();
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(15))
        .build()
        .map_err(|e| CliError::Usage(format!("cannot build an HTTP client: {e}")))?;
    let response = client
        .post(format!("{base}/sms/inbound"))
        .header("content-type", "application/x-www-form-urlencoded")
        .header("x-twilio-signature", signature)
        .body(body)
        .send()
        .await
        .map_err(|e| CliError::Usage(format!("cannot reach {base}: {e}")))?;
    let status = response.status();
    let text = response.text().await.unwrap_or_default();
    println!("{} {text}", status.as_u16());
    eprintln!("MessageSid {sid}");
    if status.is_success() {
        Ok(())
    } else {
        Err(CliError::Usage(format!(
            "the server answered {}",
            status.as_u16()
        )))
    }
}
