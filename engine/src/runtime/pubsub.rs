//! Pub/sub on one worker: joining and leaving topics (the table is
//! [`super::topics`]), and the delivery of a publish to the local subscribers.
//! A publish reaches the other workers as a command (see [`super::worker`]),
//! so nothing here is shared between threads.

use slab::Slab;

use super::conn::{Link, SharedFrames};
use super::shared::Shared;
use super::socket::Conn;
use super::topics::Topics;
use crate::types::{PreparedMessage, SendStatus};

/// Subscribes `link` to `topic`; false if it already was.
pub(crate) fn join<U>(topics: &mut Topics, link: &mut Link<U>, topic: &str) -> bool {
    if is_member(topics, link, topic) {
        return false;
    }
    let id = topics.subscribe(topic, link.key());
    link.topics_mut().push(id);
    true
}

/// Unsubscribes `link` from `topic`; false if it was not subscribed.
pub(crate) fn leave<U>(topics: &mut Topics, link: &mut Link<U>, topic: &str) -> bool {
    let Some(id) = topics.id(topic) else {
        return false;
    };
    let Some(pos) = link.topics().iter().position(|&t| t == id) else {
        return false;
    };
    let ids = link.topics_mut();
    ids.swap_remove(pos);
    if ids.is_empty() {
        link.take_topics();
    }
    topics.unsubscribe(id, link.key());
    true
}

/// Whether `link` subscribes to `topic`.
pub(crate) fn is_member<U>(topics: &Topics, link: &Link<U>, topic: &str) -> bool {
    topics
        .id(topic)
        .is_some_and(|id| link.topics().contains(&id))
}

/// Sends `message` to this worker's subscribers of `topic`; `keys` is scratch
/// space. Compressed at most once per shared window for all of them.
pub(crate) fn deliver<U>(
    conns: &mut Slab<Conn<U>>,
    shared: &mut Shared<U>,
    keys: &mut Vec<u32>,
    topic: &str,
    message: &PreparedMessage,
) {
    keys.clear();
    keys.extend_from_slice(shared.topics.subscribers(topic));
    let mut compressed = SharedFrames::default();
    for &key in keys.iter() {
        if let Some(conn) = conns.get_mut(key as usize) {
            if conn
                .stream
                .link
                .send_prepared(shared, message, &mut compressed)
                != SendStatus::Dropped
            {
                shared.counters.deliveries += 1;
            }
        }
    }
}
