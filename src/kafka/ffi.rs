//! The three librdkafka calls that rdkafka 0.38 does not bind, made through its re-exported C
//! bindings. This is the only module of shoal with `unsafe` code; each block says why it holds.
//!
//! - [`set_oauth_token`]: rdkafka serves OAUTHBEARER token refreshes only from a poll of the
//!   client's main queue, which its `AdminClient` never polls (rust-rdkafka issue 757), so an
//!   admin client over MSK IAM would wait for a token for ever. shoal hands it one itself.
//! - [`incremental_alter_configs`]: rdkafka binds only AlterConfigs, which replaces a topic's
//!   whole dynamic configuration; IncrementalAlterConfigs changes just the keys named.
//! - [`list_consumer_group_offsets`]: rdkafka reads committed offsets only for a consumer's own
//!   `group.id`, so reading many groups took a client per group. The admin call
//!   ListConsumerGroupOffsets reads any group's from one client.

#![allow(unsafe_code)]

use std::collections::BTreeMap;
use std::ffi::{c_char, c_int, c_void, CStr, CString};
use std::ptr;
use std::time::Duration;

use rdkafka::bindings as rd;
use rdkafka::client::{Client, OAuthToken};
use rdkafka::topic_partition_list::TopicPartitionList;
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
    #[error("the answer was not a {0} result")]
    WrongAnswer(&'static str),
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
    answered(code, &errstr)
}

/// `Ok` when librdkafka answered NO_ERROR, else its refusal as it wrote it into `errstr`.
fn answered(code: rd::rd_kafka_resp_err_t, errstr: &[u8]) -> Result<(), FfiError> {
    if code == rd::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_NO_ERROR {
        Ok(())
    } else {
        Err(FfiError::Refused(errstr_text(errstr)))
    }
}

/// Sets an admin request's timeout on its options.
///
/// # Safety
/// `options` is a live rd_kafka_AdminOptions_t that no other thread uses during the call.
unsafe fn set_request_timeout(
    options: *mut rd::rd_kafka_AdminOptions_t,
    timeout_ms: c_int,
) -> Result<(), FfiError> {
    let mut errstr = [0u8; ERRSTR];
    let code = rd::rd_kafka_AdminOptions_set_request_timeout(
        options,
        timeout_ms,
        errstr.as_mut_ptr().cast::<c_char>(),
        errstr.len(),
    );
    answered(code, &errstr)
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
        set_request_timeout(req.options, timeout_ms)?;
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
            return Err(FfiError::WrongAnswer("IncrementalAlterConfigs"));
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

/// One partition's committed offset, as a group's coordinator answered it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommittedOffset {
    pub topic: String,
    pub partition: i32,
    /// The offset as librdkafka gives it: negative (-1001, its `INVALID`) where the group
    /// has not committed on the partition.
    pub offset: i64,
    /// The partition's own error, in librdkafka's words.
    pub error: Option<String>,
}

/// What [`list_consumer_group_offsets`] gives for one group.
pub type GroupOffsets = Result<Vec<CommittedOffset>, FfiError>;

/// The librdkafka objects of the group requests of one call, destroyed together whatever
/// happens.
struct GroupRequests {
    queue: *mut rd::rd_kafka_queue_t,
    options: *mut rd::rd_kafka_AdminOptions_t,
    groups: Vec<*mut rd::rd_kafka_ListConsumerGroupOffsets_t>,
}

impl Drop for GroupRequests {
    fn drop(&mut self) {
        // SAFETY: each pointer is null or was returned by the matching librdkafka
        // constructor, is owned by this struct alone and is destroyed exactly once, here.
        // librdkafka copied each group object when its request was made.
        unsafe {
            for g in self.groups.drain(..) {
                rd::rd_kafka_ListConsumerGroupOffsets_destroy(g);
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

/// An admin result event, destroyed when dropped.
struct Event(*mut rd::rd_kafka_event_t);

impl Drop for Event {
    fn drop(&mut self) {
        // SAFETY: the event was returned by rd_kafka_queue_poll, is owned by this struct
        // alone and is destroyed exactly once, here.
        unsafe { rd::rd_kafka_event_destroy(self.0) }
    }
}

/// ListConsumerGroupOffsets: each group's committed offsets on its partitions (only their
/// topic and partition are read), all on one client. librdkafka takes one group per request,
/// so every group is a request of its own, all made at once on one queue: they are in flight
/// together, each to its group's coordinator. Blocks until every group is answered or
/// `timeout` passes; one result per group, in order.
pub fn list_consumer_group_offsets<C: ClientContext>(
    client: &Client<C>,
    groups: &[(&str, &TopicPartitionList)],
    timeout: Duration,
) -> Vec<GroupOffsets> {
    let mut answers: Vec<Option<GroupOffsets>> = groups.iter().map(|_| None).collect();
    let names: Vec<Result<CString, FfiError>> = groups
        .iter()
        .map(|(g, _)| c_string("group id", g))
        .collect();
    let timeout_ms = c_int::try_from(timeout.as_millis()).unwrap_or(c_int::MAX);
    let rk = client.native_ptr();
    let mut req = GroupRequests {
        queue: ptr::null_mut(),
        options: ptr::null_mut(),
        groups: Vec::with_capacity(groups.len()),
    };
    // SAFETY: `rk` is the live rd_kafka_t owned by `client`, borrowed for the whole function.
    // Every object created here is owned by `req` (or, for an event, by an `Event`), which
    // destroys it on every return path. Group names are NUL-terminated and outlive the calls
    // that read them; each group object copies its name and partition list (`tpl.ptr()` is
    // only read), and each request copies its group object and its options, so setting the
    // options' opaque (the group's index, not a pointer) for the next request leaves the last
    // one's as it was. Every event on the private queue answers one of these requests; the
    // memory a result points to lives as long as its event, and is copied out before the
    // event is dropped.
    unsafe {
        req.queue = rd::rd_kafka_queue_new(rk);
        req.options = rd::rd_kafka_AdminOptions_new(
            rk,
            rd::rd_kafka_admin_op_t::RD_KAFKA_ADMIN_OP_LISTCONSUMERGROUPOFFSETS,
        );
        if let Err(e) = set_request_timeout(req.options, timeout_ms) {
            let text = e.to_string();
            return groups
                .iter()
                .map(|_| Err(FfiError::Refused(text.clone())))
                .collect();
        }
        let mut pending = 0usize;
        for (i, ((_, tpl), name)) in groups.iter().zip(names).enumerate() {
            let name = match name {
                Ok(n) => n,
                Err(e) => {
                    answers[i] = Some(Err(e));
                    continue;
                }
            };
            let group = rd::rd_kafka_ListConsumerGroupOffsets_new(name.as_ptr(), tpl.ptr());
            req.groups.push(group);
            rd::rd_kafka_AdminOptions_set_opaque(req.options, i as *mut c_void);
            let mut one = [group];
            rd::rd_kafka_ListConsumerGroupOffsets(
                rk,
                one.as_mut_ptr(),
                one.len(),
                req.options,
                req.queue,
            );
            pending += 1;
        }
        // The requests' own timeout answers first; the extra second only guards the wait.
        let deadline = std::time::Instant::now() + timeout + Duration::from_secs(1);
        while pending > 0 {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            let event = rd::rd_kafka_queue_poll(
                req.queue,
                c_int::try_from(left.as_millis()).unwrap_or(c_int::MAX),
            );
            if event.is_null() {
                break;
            }
            let event = Event(event);
            let i = rd::rd_kafka_event_opaque(event.0) as usize;
            let Some(slot) = answers.get_mut(i).filter(|a| a.is_none()) else {
                continue;
            };
            *slot = Some(group_offsets(&event));
            pending -= 1;
        }
    }
    answers
        .into_iter()
        .map(|a| {
            a.unwrap_or(Err(FfiError::Timeout {
                seconds: timeout.as_secs(),
            }))
        })
        .collect()
}

/// The answer one ListConsumerGroupOffsets result event carries for its one group.
///
/// # Safety
/// `event` holds a live event from a ListConsumerGroupOffsets request.
unsafe fn group_offsets(event: &Event) -> GroupOffsets {
    if rd::rd_kafka_event_error(event.0) != rd::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_NO_ERROR {
        return Err(FfiError::Refused(owned(rd::rd_kafka_event_error_string(
            event.0,
        ))));
    }
    let result = rd::rd_kafka_event_ListConsumerGroupOffsets_result(event.0);
    if result.is_null() {
        return Err(FfiError::WrongAnswer("ListConsumerGroupOffsets"));
    }
    let mut count = 0usize;
    let answered = rd::rd_kafka_ListConsumerGroupOffsets_result_groups(result, &mut count);
    if answered.is_null() || count != 1 {
        return Err(FfiError::WrongAnswer("ListConsumerGroupOffsets"));
    }
    let group = *answered;
    let error = rd::rd_kafka_group_result_error(group);
    if !error.is_null() {
        return Err(FfiError::Refused(owned(rd::rd_kafka_error_string(error))));
    }
    let list = rd::rd_kafka_group_result_partitions(group);
    if list.is_null() {
        return Ok(Vec::new());
    }
    let count = usize::try_from((*list).cnt).unwrap_or(0);
    let elems = (*list).elems;
    let mut out = Vec::with_capacity(count);
    for k in 0..count {
        let p = &*elems.add(k);
        out.push(CommittedOffset {
            topic: owned(p.topic),
            partition: p.partition,
            offset: p.offset,
            error: (p.err != rd::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_NO_ERROR)
                .then(|| owned(rd::rd_kafka_err2str(p.err))),
        });
    }
    Ok(out)
}
