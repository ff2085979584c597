//! Topics of one worker. A topic maps to the slab keys of its subscribers on this
//! worker; publishing to all workers is done by message passing (see
//! [`super::worker`]), so nothing here is shared.

use std::collections::HashMap;

use slab::Slab;

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
}

impl Topics {
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
}
