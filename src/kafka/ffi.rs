//! The two librdkafka calls that rdkafka 0.38 does not bind, made through its re-exported C
//! bindings. This is the only module of shoal with `unsafe` code; each block says why it holds.
//!
//! - [`set_oauth_token`]: rdkafka serves OAUTHBEARER token refreshes only from a poll of the
//!   client's main queue, which its `AdminClient` never polls (rust-rdkafka issue 757), so an
//!   admin client over MSK IAM would wait for a token for ever. shoal hands it one itself.
//! - [`incremental_alter_configs`]: rdkafka binds only AlterConfigs, which replaces a topic's
//!   whole dynamic configuration; IncrementalAlterConfigs changes just the keys named.

#![allow(unsafe_code)]

use std::collections::BTreeMap;
use std::ffi::{c_char, c_int, CStr, CString};
use std::ptr;
use std::time::Duration;

use rdkafka::bindings as rd;
use rdkafka::client::{Client, OAuthToken};
use rdkafka::ClientContext;

/// One topic's alterations: `Some(value)` sets a key, `None` deletes it (back to the default).
pub type Alterations = BTreeMap<String, Option<String>>;

const ERRSTR: usize = 512;

/// Why a librdkafka call failed. librdkafka reports its errors as text, kept as it gave it.
#[derive(Debug, thiserror::Error)]
pub enum FfiError {
    /// A string with a NUL byte cannot cross into C.
    #[error("the {what} contains a NUL byte")]
    Nul { what: String },
    /// librdkafka's (or the broker's) refusal, in its words.
    #[error("{0}")]
    Refused(String),
    /// librdkafka refused one config key of the request.
    #[error("{key}: {message}")]
    Key { key: String, message: String },
    #[error("no answer within {seconds}s")]
    Timeout { seconds: u64 },
    #[error("the answer was not an IncrementalAlterConfigs result")]
    WrongAnswer,
}

fn c_string(what: &str, s: &str) -> Result<CString, FfiError> {
    CString::new(s).map_err(|_| FfiError::Nul {
        what: what.to_string(),
    })
}

/// The text librdkafka wrote into an error buffer.
fn errstr_text(buf: &[u8]) -> String {
    CStr::from_bytes_until_nul(buf)
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// Copies a C string librdkafka owns; empty for a null pointer.
///
/// # Safety
/// `s` is null or points to a NUL-terminated string that stays valid during the call.
unsafe fn owned(s: *const c_char) -> String {
    if s.is_null() {
        String::new()
    } else {
        CStr::from_ptr(s).to_string_lossy().into_owned()
    }
}

/// Sets the client's SASL/OAUTHBEARER token (`rd_kafka_oauthbearer_set_token`). librdkafka
/// refuses it, with a message, when the client is not configured for OAUTHBEARER.
pub fn set_oauth_token<C: ClientContext>(
    client: &Client<C>,
    token: &OAuthToken,
) -> Result<(), FfiError> {
    let value = c_string("token", &token.token)?;
    let principal = c_string("principal name", &token.principal_name)?;
    let mut errstr = [0u8; ERRSTR];
    // SAFETY: `client.native_ptr()` is the live rd_kafka_t that `client` owns and keeps alive
    // for the whole call; `value` and `principal` are NUL-terminated and outlive the call
    // (librdkafka copies them); there are no extensions (null, count 0); `errstr` is writable
    // for the length given, and librdkafka NUL-terminates what it writes there.
    let code = unsafe {
        rd::rd_kafka_oauthbearer_set_token(
            client.native_ptr(),
            value.as_ptr(),
            token.lifetime_ms,
            principal.as_ptr(),
            ptr::null_mut(),
            0,
            errstr.as_mut_ptr().cast::<c_char>(),
            errstr.len(),
        )
    };
    if code == rd::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_NO_ERROR {
        Ok(())
    } else {
        Err(FfiError::Refused(errstr_text(&errstr)))
    }
}

/// The librdkafka objects of one request, destroyed together whatever happens.
struct Request {
    queue: *mut rd::rd_kafka_queue_t,
    options: *mut rd::rd_kafka_AdminOptions_t,
    resource: *mut rd::rd_kafka_ConfigResource_t,
    event: *mut rd::rd_kafka_event_t,
}

impl Drop for Request {
    fn drop(&mut self) {
        // SAFETY: each pointer is null or was returned by the matching librdkafka
        // constructor, is owned by this struct alone and is destroyed exactly once, here.
        unsafe {
            if !self.event.is_null() {
                rd::rd_kafka_event_destroy(self.event);
            }
            if !self.resource.is_null() {
                rd::rd_kafka_ConfigResource_destroy(self.resource);
            }
            if !self.options.is_null() {
                rd::rd_kafka_AdminOptions_destroy(self.options);
            }
            if !self.queue.is_null() {
                rd::rd_kafka_queue_destroy(self.queue);
            }
        }
    }
}

/// IncrementalAlterConfigs for one topic: sets and deletes these keys and leaves every other
/// key as it is. Blocks until the broker answers or `timeout` passes.
pub fn incremental_alter_configs<C: ClientContext>(
    client: &Client<C>,
    topic: &str,
    alterations: &Alterations,
    timeout: Duration,
) -> Result<(), FfiError> {
    let name = c_string("topic name", topic)?;
    let mut keys = Vec::with_capacity(alterations.len());
    for (key, value) in alterations {
        let value = value
            .as_deref()
            .map(|v| c_string(&format!("value of {key}"), v))
            .transpose()?;
        keys.push((c_string("config key", key)?, value));
    }
    let timeout_ms = c_int::try_from(timeout.as_millis()).unwrap_or(c_int::MAX);
    let rk = client.native_ptr();
    let mut req = Request {
        queue: ptr::null_mut(),
        options: ptr::null_mut(),
        resource: ptr::null_mut(),
        event: ptr::null_mut(),
    };
    // SAFETY: `rk` is the live rd_kafka_t owned by `client`, borrowed for the whole function.
    // Every object created here is owned by `req`, which destroys it on every return path;
    // every string passed is NUL-terminated and outlives the call that reads it (librdkafka
    // copies names and values). The request takes the resource array by pointer and copies
    // it before returning; the event is the only one the private queue ever receives.
    unsafe {
        req.queue = rd::rd_kafka_queue_new(rk);
        req.options = rd::rd_kafka_AdminOptions_new(
            rk,
            rd::rd_kafka_admin_op_t::RD_KAFKA_ADMIN_OP_INCREMENTALALTERCONFIGS,
        );
        let mut errstr = [0u8; ERRSTR];
        let code = rd::rd_kafka_AdminOptions_set_request_timeout(
            req.options,
            timeout_ms,
            errstr.as_mut_ptr().cast::<c_char>(),
            errstr.len(),
        );
        if code != rd::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_NO_ERROR {
            return Err(FfiError::Refused(errstr_text(&errstr)));
        }
        req.resource = rd::rd_kafka_ConfigResource_new(
            rd::rd_kafka_ResourceType_t::RD_KAFKA_RESOURCE_TOPIC,
            name.as_ptr(),
        );
        for (key, value) in &keys {
            let (op, value) = match value {
                Some(v) => (
                    rd::rd_kafka_AlterConfigOpType_t::RD_KAFKA_ALTER_CONFIG_OP_TYPE_SET,
                    v.as_ptr(),
                ),
                None => (
                    rd::rd_kafka_AlterConfigOpType_t::RD_KAFKA_ALTER_CONFIG_OP_TYPE_DELETE,
                    ptr::null(),
                ),
            };
            let err = rd::rd_kafka_ConfigResource_add_incremental_config(
                req.resource,
                key.as_ptr(),
                op,
                value,
            );
            if !err.is_null() {
                let text = owned(rd::rd_kafka_error_string(err));
                rd::rd_kafka_error_destroy(err);
                return Err(FfiError::Key {
                    key: key.to_string_lossy().into_owned(),
                    message: text,
                });
            }
        }
        let mut resources = [req.resource];
        rd::rd_kafka_IncrementalAlterConfigs(
            rk,
            resources.as_mut_ptr(),
            resources.len(),
            req.options,
            req.queue,
        );
        // The request's own timeout answers first; the extra second only guards the wait.
        req.event = rd::rd_kafka_queue_poll(req.queue, timeout_ms.saturating_add(1000));
        if req.event.is_null() {
            return Err(FfiError::Timeout {
                seconds: timeout.as_secs(),
            });
        }
        if rd::rd_kafka_event_error(req.event)
            != rd::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_NO_ERROR
        {
            return Err(FfiError::Refused(owned(rd::rd_kafka_event_error_string(
                req.event,
            ))));
        }
        let result = rd::rd_kafka_event_IncrementalAlterConfigs_result(req.event);
        if result.is_null() {
            return Err(FfiError::WrongAnswer);
        }
        let mut count = 0usize;
        let answered = rd::rd_kafka_IncrementalAlterConfigs_result_resources(result, &mut count);
        for i in 0..count {
            let r = *answered.add(i);
            if rd::rd_kafka_ConfigResource_error(r)
                != rd::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_NO_ERROR
            {
                return Err(FfiError::Refused(owned(
                    rd::rd_kafka_ConfigResource_error_string(r),
                )));
            }
        }
    }
    Ok(())
}
