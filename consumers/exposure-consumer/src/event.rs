//! The Kafka message contract, owned by consumers/exposure-event (shared with exposure-api):
//! a message that fails its checks is a poison message and goes to the DLQ.

pub use exposure_event::Exposure;

/// Parses and checks a message value. The error says what is wrong, for the DLQ's `error`
/// header.
pub fn parse(payload: Option<&[u8]>) -> Result<Exposure, String> {
    let payload = payload.ok_or("the message has no value")?;
    exposure_event::parse_wire(payload).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_message_without_a_value_is_poison() {
        assert_eq!(parse(None).unwrap_err(), "the message has no value");
    }

    #[test]
    fn errors_name_the_field() {
        let e = parse(Some(br#"{"exposure_id": "x"}"#)).unwrap_err();
        assert_eq!(e, "ds_user_id is required");
        assert!(parse(Some(b"{not json"))
            .unwrap_err()
            .contains("not valid JSON"));
    }
}
