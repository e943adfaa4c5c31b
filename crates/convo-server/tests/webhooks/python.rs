//! The webhook signatures checked by Python, not by our own code (`verify.py` beside this
//! file): NexHealth's with the standard library, Standard Webhooks' with its package from
//! PyPI. Shared by the test binaries that check signatures.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use std::io::Write;
use std::process::{Command, Stdio};

/// The five signature headers in this order: `timestamp`, `signature`, `webhook-id`,
/// `webhook-timestamp`, `webhook-signature`.
pub fn verify_in_python(secret: &str, headers: [&str; 5], body: &[u8]) -> Result<(), String> {
    let [
        timestamp,
        signature,
        id,
        webhook_timestamp,
        webhook_signature,
    ] = headers;
    let doc = serde_json::json!({
        "secret": secret,
        "headers": {
            "timestamp": timestamp,
            "signature": signature,
            "webhook-id": id,
            "webhook-timestamp": webhook_timestamp,
            "webhook-signature": webhook_signature,
        },
        "body_b64": STANDARD.encode(body),
    });
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/webhooks/verify.py");
    let mut child = Command::new("python3")
        .arg(script)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("python3: {e}"))?;
    child
        .stdin
        .take()
        .ok_or("no stdin")?
        .write_all(doc.to_string().as_bytes())
        .map_err(|e| e.to_string())?;
    let out = child.wait_with_output().map_err(|e| e.to_string())?;
    let said = String::from_utf8_lossy(&out.stdout).trim().to_string();
    if out.status.success() && said == "ok" {
        Ok(())
    } else {
        Err(format!("{said} {}", String::from_utf8_lossy(&out.stderr)))
    }
}
