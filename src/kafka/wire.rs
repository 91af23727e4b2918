//! IncrementalAlterConfigs (Kafka API key 44, version 0) spoken directly over TCP.
//!
//! rdkafka 0.38 binds only AlterConfigs, which replaces a topic's whole dynamic configuration
//! (and which tansu does not implement); librdkafka's `rd_kafka_IncrementalAlterConfigs` is
//! reachable only through `unsafe` FFI, which this crate forbids. The request is small, so
//! shoal encodes it itself. It works on plaintext listeners only: on TLS and SASL listeners
//! (MSK's TLS and SCRAM modes) [`super::admin::Admin::alter_configs`] sends AlterConfigs with
//! the topic's whole dynamic configuration instead.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

const API_KEY: i16 = 44;
const API_VERSION: i16 = 0;
const RESOURCE_TOPIC: i8 = 2;
/// IncrementalAlterConfigs operations.
pub const OP_SET: i8 = 0;
pub const OP_DELETE: i8 = 1;

/// One topic's alterations: `Some(value)` sets a key, `None` deletes it (back to the default).
pub type Alterations = BTreeMap<String, Option<String>>;

fn string(out: &mut Vec<u8>, s: &str) {
    out.extend_from_slice(&(s.len() as i16).to_be_bytes());
    out.extend_from_slice(s.as_bytes());
}

/// The framed request (size prefix, header v1, body v0).
pub fn encode(correlation_id: i32, topic: &str, alterations: &Alterations) -> Vec<u8> {
    let mut body = Vec::new();
    body.extend_from_slice(&API_KEY.to_be_bytes());
    body.extend_from_slice(&API_VERSION.to_be_bytes());
    body.extend_from_slice(&correlation_id.to_be_bytes());
    string(&mut body, "shoal");
    body.extend_from_slice(&1i32.to_be_bytes()); // one resource
    body.push(RESOURCE_TOPIC as u8);
    string(&mut body, topic);
    body.extend_from_slice(&(alterations.len() as i32).to_be_bytes());
    for (name, value) in alterations {
        string(&mut body, name);
        match value {
            Some(v) => {
                body.push(OP_SET as u8);
                string(&mut body, v);
            }
            None => {
                body.push(OP_DELETE as u8);
                body.extend_from_slice(&(-1i16).to_be_bytes());
            }
        }
    }
    body.push(0); // validate_only = false
    let mut framed = (body.len() as i32).to_be_bytes().to_vec();
    framed.extend_from_slice(&body);
    framed
}

struct Reader<'a>(&'a [u8]);

impl Reader<'_> {
    fn take(&mut self, n: usize) -> Result<&[u8], String> {
        if self.0.len() < n {
            return Err("the answer is shorter than its fields".into());
        }
        let (a, b) = self.0.split_at(n);
        self.0 = b;
        Ok(a)
    }
    fn i8(&mut self) -> Result<i8, String> {
        Ok(self.take(1)?[0] as i8)
    }
    fn i16(&mut self) -> Result<i16, String> {
        let b = self.take(2)?;
        Ok(i16::from_be_bytes([b[0], b[1]]))
    }
    fn i32(&mut self) -> Result<i32, String> {
        let b = self.take(4)?;
        Ok(i32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }
    fn string(&mut self) -> Result<Option<String>, String> {
        let n = self.i16()?;
        if n < 0 {
            return Ok(None);
        }
        Ok(Some(
            String::from_utf8_lossy(self.take(n as usize)?).into_owned(),
        ))
    }
}

/// One resource's answer: the error code (0 is success) and message.
#[derive(Debug, PartialEq)]
pub struct Answer {
    pub resource: String,
    pub error_code: i16,
    pub error_message: Option<String>,
}

/// Decodes a response (without its size prefix).
pub fn decode(correlation_id: i32, bytes: &[u8]) -> Result<Vec<Answer>, String> {
    let mut r = Reader(bytes);
    let id = r.i32()?;
    if id != correlation_id {
        return Err(format!("answer to request {id}, expected {correlation_id}"));
    }
    let _throttle = r.i32()?;
    let n = r.i32()?;
    let mut out = Vec::new();
    for _ in 0..n.max(0) {
        let error_code = r.i16()?;
        let error_message = r.string()?;
        let _type = r.i8()?;
        let resource = r.string()?.unwrap_or_default();
        out.push(Answer {
            resource,
            error_code,
            error_message,
        });
    }
    Ok(out)
}

/// Sends one IncrementalAlterConfigs request for one topic to `broker` (`host:port`).
pub fn incremental_alter_configs(
    broker: &str,
    topic: &str,
    alterations: &Alterations,
    timeout: Duration,
) -> Result<(), String> {
    let addr = std::net::ToSocketAddrs::to_socket_addrs(broker)
        .map_err(|e| format!("cannot resolve {broker}: {e}"))?
        .next()
        .ok_or_else(|| format!("{broker} resolves to no address"))?;
    let mut stream = TcpStream::connect_timeout(&addr, timeout)
        .map_err(|e| format!("cannot connect to {broker}: {e}"))?;
    stream
        .set_read_timeout(Some(timeout))
        .and_then(|()| stream.set_write_timeout(Some(timeout)))
        .map_err(|e| e.to_string())?;
    let correlation_id = 1;
    stream
        .write_all(&encode(correlation_id, topic, alterations))
        .map_err(|e| format!("cannot send to {broker}: {e}"))?;
    let mut size = [0u8; 4];
    stream.read_exact(&mut size).map_err(|e| {
        format!("no answer from {broker} (does it implement IncrementalAlterConfigs?): {e}")
    })?;
    let size = i32::from_be_bytes(size);
    if !(0..=1 << 20).contains(&size) {
        return Err(format!("{broker} answered with a bad size {size}"));
    }
    let mut answer = vec![0u8; size as usize];
    stream
        .read_exact(&mut answer)
        .map_err(|e| format!("cannot read the answer of {broker}: {e}"))?;
    for a in decode(correlation_id, &answer)? {
        if a.error_code != 0 {
            return Err(format!(
                "the broker refused the configs of {}: error code {}{}",
                a.resource,
                a.error_code,
                a.error_message
                    .map(|m| format!(" ({m})"))
                    .unwrap_or_default()
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_bytes() {
        let mut alt = Alterations::new();
        alt.insert("a".into(), Some("1".into()));
        alt.insert("b".into(), None);
        let bytes = encode(7, "t", &alt);
        let expected: Vec<u8> = [
            &[0, 0, 0, 41][..],         // size
            &[0, 44, 0, 0, 0, 0, 0, 7], // api key, version, correlation id
            &[0, 5],
            b"shoal",
            &[0, 0, 0, 1, 2, 0, 1],
            b"t",
            &[0, 0, 0, 2],
            &[0, 1, b'a', 0, 0, 1, b'1'],
            &[0, 1, b'b', 1, 0xff, 0xff],
            &[0],
        ]
        .concat();
        assert_eq!(bytes, expected);
    }

    #[test]
    fn answer_with_an_error() {
        let answer: Vec<u8> = [
            &[0, 0, 0, 9, 0, 0, 0, 0, 0, 0, 0, 1][..],
            &[0, 40, 0, 3],
            b"bad",
            &[2, 0, 1, b't'],
        ]
        .concat();
        let a = decode(9, &answer).expect("decodes");
        assert_eq!(
            a,
            vec![Answer {
                resource: "t".into(),
                error_code: 40,
                error_message: Some("bad".into())
            }]
        );
        assert!(decode(8, &answer).is_err());
    }
}
