//! Phone numbers as the write side compares them: E.164, with US as the default country for
//! numbers written without a country code (CONTRACT §6).

use phonenumber::country::Id;

/// `"+12125550140"` for `"(212) 555-0140"`, `"212.555.0140"` or `"+1 212 555 0140"`; `None`
/// for text that is not a plausible phone number.
pub fn e164(text: &str) -> Option<String> {
    let trimmed = text.trim();
    if trimmed.is_empty() {
        return None;
    }
    let number = phonenumber::parse(Some(Id::US), trimmed).ok()?;
    if !phonenumber::is_viable(trimmed) && !phonenumber::is_valid(&number) {
        return None;
    }
    Some(phonenumber::format(&number).to_string())
}

/// The numbers a patient can be texted at or texts from, from their free-form `bio`
/// (`cell_phone_number` first, then `phone_number`), normalised and without repeats.
pub fn bio_phones(bio: &str) -> Vec<String> {
    let Ok(serde_json::Value::Object(map)) = serde_json::from_str::<serde_json::Value>(bio) else {
        return Vec::new();
    };
    let mut out: Vec<String> = Vec::new();
    for key in ["cell_phone_number", "phone_number"] {
        if let Some(n) = map.get(key).and_then(|v| v.as_str()).and_then(e164)
            && !out.contains(&n)
        {
            out.push(n);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn us_default_and_international() {
        for text in [
            "+12125550140",
            "(212) 555-0140",
            "212.555.0140",
            "+1 212 555 0140",
            " 1-212-555-0140 ",
        ] {
            assert_eq!(e164(text).as_deref(), Some("+12125550140"), "{text}");
        }
        assert_eq!(e164("+44 20 7946 0958").as_deref(), Some("+442079460958"));
        for bad in ["", "   ", "hello", "12"] {
            assert_eq!(e164(bad), None, "{bad}");
        }
    }

    #[test]
    fn phones_from_bio() {
        assert_eq!(
            bio_phones(r#"{"phone_number":"(212) 555-0199","cell_phone_number":"212-555-0140"}"#),
            vec!["+12125550140", "+12125550199"]
        );
        assert_eq!(
            bio_phones(r#"{"cell_phone_number":"+12125550140","phone_number":"+1 212 555 0140"}"#),
            vec!["+12125550140"]
        );
        assert!(bio_phones("{}").is_empty());
        assert!(bio_phones(r#"{"cell_phone_number":null}"#).is_empty());
        assert!(bio_phones("not json").is_empty());
    }
}
