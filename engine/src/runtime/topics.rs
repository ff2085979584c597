//! The topic table of one worker: topic names interned to small ids, each with
//! the slab keys of its subscribers here, and (with a bridge) the node-wide
//! count told of a topic's first and last subscriber on this worker.

use std::collections::HashMap;
use std::sync::Arc;

use slab::Slab;

use super::bridge::NodeTopics;

#[derive(Debug, Default)]
struct Topic {
    name: Box<str>,
    /// Subscribers' slab keys; order does not matter, so removal swaps.
    subscribers: Vec<u32>,
}

/// The topic table: names interned to small ids, each id with its subscribers.
#[derive(Debug, Default)]
pub(crate) struct Topics {
    ids: HashMap<Box<str>, u32>,
    topics: Slab<Topic>,
    /// With a bridge: told when a topic appears on or leaves this worker.
    node: Option<Arc<NodeTopics>>,
}

impl Topics {
    /// A table that tells `node` (if any) of each topic's first and last
    /// subscriber here.
    pub fn new(node: Option<Arc<NodeTopics>>) -> Self {
        Self {
            node,
            ..Self::default()
        }
    }

    /// The node-wide side, when a bridge is set.
    pub fn node(&self) -> Option<&NodeTopics> {
        self.node.as_deref()
    }

    /// The name of topic `id`, if it exists.
    pub fn name(&self, id: u32) -> Option<&str> {
        self.topics.get(id as usize).map(|t| &*t.name)
    }

    pub fn id(&self, name: &str) -> Option<u32> {
        self.ids.get(name).copied()
    }

    /// Adds `key` to the topic, creating it; returns the topic id.
    pub fn subscribe(&mut self, name: &str, key: usize) -> u32 {
        let id = match self.ids.get(name) {
            Some(&id) => id,
            None => {
                let id = self.topics.insert(Topic {
                    name: name.into(),
                    subscribers: Vec::new(),
                }) as u32;
                self.ids.insert(name.into(), id);
                if let Some(node) = &self.node {
                    node.worker_joined(name);
                }
                id
            }
        };
        self.topics[id as usize].subscribers.push(key as u32);
        id
    }

    /// Removes `key` from topic `id`; drops the topic when it has no subscriber.
    pub fn unsubscribe(&mut self, id: u32, key: usize) {
        let Some(topic) = self.topics.get_mut(id as usize) else {
            return;
        };
        if let Some(pos) = topic.subscribers.iter().position(|&k| k as usize == key) {
            topic.subscribers.swap_remove(pos);
        }
        if topic.subscribers.is_empty() {
            let topic = self.topics.remove(id as usize);
            self.ids.remove(&topic.name);
            if let Some(node) = &self.node {
                node.worker_left(&topic.name);
            }
        }
    }

    /// Removes `key` from every topic of `ids` (a connection that ends).
    pub fn leave_all(&mut self, ids: Vec<u32>, key: usize) {
        for id in ids {
            self.unsubscribe(id, key);
        }
    }

    /// Subscribers of a topic on this worker.
    pub fn subscribers(&self, name: &str) -> &[u32] {
        match self.ids.get(name) {
            Some(&id) => &self.topics[id as usize].subscribers,
            None => &[],
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subscribe_publish_unsubscribe() {
        let mut t = Topics::default();
        let a = t.subscribe("chat", 1);
        assert_eq!(t.subscribe("chat", 2), a);
        t.subscribe("news", 2);
        assert_eq!(t.subscribers("chat"), &[1, 2]);
        t.unsubscribe(a, 1);
        assert_eq!(t.subscribers("chat"), &[2]);
        t.unsubscribe(a, 2);
        assert_eq!(t.subscribers("chat"), &[] as &[u32]);
        assert_eq!(t.id("chat"), None);
        assert_eq!(t.subscribers("news"), &[2]);
    }

    #[test]
    fn first_and_last_subscriber_reach_the_node() {
        use crate::runtime::bridge::tests::{Call, RecordingBridge};
        let bridge = Arc::new(RecordingBridge::default());
        let mut t = Topics::new(Some(Arc::new(NodeTopics::new(bridge.clone()))));
        let a = t.subscribe("chat", 1);
        t.subscribe("chat", 2);
        assert_eq!(bridge.take(), [Call::Subscribe("chat".into())]);
        t.unsubscribe(a, 1);
        assert_eq!(bridge.take(), []);
        t.unsubscribe(a, 2);
        assert_eq!(bridge.take(), [Call::Unsubscribe("chat".into())]);
    }
}
