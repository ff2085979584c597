//! Pub/sub beyond this process: the hook a message broker plugs into
//! ([`Bridge`]), the node-wide count of workers per topic that turns the
//! workers' first-and-last-subscriber events into one subscription per node
//! ([`NodeTopics`]), and the way back in for messages from other nodes
//! ([`LocalNode`]). No broker code lives in the engine: `ringws-redis` is one
//! implementation.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use super::command::{Command, Mailbox};
use crate::types::{Message, PreparedMessage};

/// Carries this node's topics to other nodes and back, through a message broker.
///
/// The engine calls these methods from worker threads and from threads using a
/// [`crate::ServerHandle`]; they must return at once (push into a channel the
/// bridge's own thread drains), never wait on the network.
///
/// - [`subscribe`](Self::subscribe) when the node's first subscriber of a topic
///   appears (on any worker), [`unsubscribe`](Self::unsubscribe) when its last
///   one leaves (on every worker): one broker subscription per node and topic,
///   never one per client. The calls for a topic alternate, starting with
///   `subscribe`.
/// - [`publish`](Self::publish) once for every publish made on this node
///   (`WebSocket::publish*`, `ServerHandle::publish`), after the local
///   subscribers have it.
/// - Messages from other nodes go to [`LocalNode::deliver`], which reaches the
///   local subscribers on every worker and never calls the bridge again (no
///   echo loop).
pub trait Bridge: Send + Sync + 'static {
    /// Called once by [`crate::Server::start`], before any other method: where
    /// messages from other nodes are to be delivered.
    fn start(&self, node: LocalNode);

    /// The node has its first subscriber of `topic`.
    fn subscribe(&self, topic: &str);

    /// The node's last subscriber of `topic` left.
    fn unsubscribe(&self, topic: &str);

    /// A message published on this node (already delivered here) for the
    /// other nodes.
    fn publish(&self, topic: &str, message: &PreparedMessage);

    /// The server has shut down (every worker has exited).
    fn stop(&self) {}
}

/// How many workers have subscribers of each topic; calls the bridge when a
/// topic's count leaves or returns to zero. Shared by the workers of a server.
///
/// Only a worker's first and last subscriber of a topic come here, so the lock
/// is taken on those transitions alone; the bridge is called under it, so its
/// `subscribe` and `unsubscribe` calls for a topic come in the order of the
/// counts (the bridge only queues them).
pub(crate) struct NodeTopics {
    bridge: Arc<dyn Bridge>,
    workers: Mutex<HashMap<Box<str>, u32>>,
}

impl std::fmt::Debug for NodeTopics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NodeTopics").finish_non_exhaustive()
    }
}

impl NodeTopics {
    pub fn new(bridge: Arc<dyn Bridge>) -> Self {
        Self {
            bridge,
            workers: Mutex::default(),
        }
    }

    pub fn bridge(&self) -> &dyn Bridge {
        &*self.bridge
    }

    /// A worker has its first subscriber of `topic`.
    pub fn worker_joined(&self, topic: &str) {
        let mut workers = self.workers.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(count) = workers.get_mut(topic) {
            *count += 1;
            return;
        }
        workers.insert(topic.into(), 1);
        self.bridge.subscribe(topic);
    }

    /// A worker lost its last subscriber of `topic`.
    pub fn worker_left(&self, topic: &str) {
        let mut workers = self.workers.lock().unwrap_or_else(|e| e.into_inner());
        let Some(count) = workers.get_mut(topic) else {
            debug_assert!(false, "a worker left {topic:?} it never joined");
            return;
        };
        *count -= 1;
        if *count == 0 {
            workers.remove(topic);
            self.bridge.unsubscribe(topic);
        }
    }
}

/// This node's subscribers on every worker, as a [`Bridge`] reaches them:
/// delivers messages that came from other nodes. Cheap to clone; holds no
/// reference to the server itself, so a bridge may keep it without keeping the
/// server alive.
#[derive(Debug, Clone)]
pub struct LocalNode {
    mailboxes: Arc<[Mailbox]>,
}

impl LocalNode {
    pub(crate) fn new(mailboxes: Arc<[Mailbox]>) -> Self {
        Self { mailboxes }
    }

    /// Delivers `message` to this node's subscribers of `topic` on every
    /// worker, as a local publish is delivered, without handing it to the
    /// bridge again. The frame is shared by all of them. False once the server
    /// has shut down.
    pub fn deliver(&self, topic: &str, message: PreparedMessage) -> bool {
        deliver(&self.mailboxes, topic, message)
    }

    /// Encodes `message` once and [delivers](Self::deliver) it.
    pub fn deliver_message(&self, topic: &str, message: Message<'_>) -> bool {
        self.deliver(topic, PreparedMessage::new(message))
    }
}

/// Queues `message` for the subscribers of `topic` on every worker; false if
/// every worker has exited.
pub(crate) fn deliver(mailboxes: &[Mailbox], topic: &str, message: PreparedMessage) -> bool {
    let topic: Arc<str> = topic.into();
    let mut delivered = false;
    for mailbox in mailboxes {
        delivered |= mailbox.send(Command::Publish {
            topic: topic.clone(),
            message: message.clone(),
        });
    }
    delivered
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// What a bridge was asked, in order.
    #[derive(Debug, Clone, PartialEq, Eq)]
    pub(crate) enum Call {
        Start,
        Subscribe(String),
        Unsubscribe(String),
        Publish(String, Vec<u8>),
        Stop,
    }

    /// A bridge that records its calls.
    #[derive(Debug, Default)]
    pub(crate) struct RecordingBridge(pub Mutex<Vec<Call>>);

    impl RecordingBridge {
        pub fn take(&self) -> Vec<Call> {
            std::mem::take(&mut self.0.lock().unwrap())
        }
    }

    impl Bridge for RecordingBridge {
        fn start(&self, _: LocalNode) {
            self.0.lock().unwrap().push(Call::Start);
        }
        fn subscribe(&self, topic: &str) {
            self.0.lock().unwrap().push(Call::Subscribe(topic.into()));
        }
        fn unsubscribe(&self, topic: &str) {
            self.0.lock().unwrap().push(Call::Unsubscribe(topic.into()));
        }
        fn publish(&self, topic: &str, message: &PreparedMessage) {
            self.0
                .lock()
                .unwrap()
                .push(Call::Publish(topic.into(), message.payload().to_vec()));
        }
        fn stop(&self) {
            self.0.lock().unwrap().push(Call::Stop);
        }
    }

    #[test]
    fn one_subscription_per_node_across_workers() {
        let bridge = Arc::new(RecordingBridge::default());
        let node = NodeTopics::new(bridge.clone());
        // Worker 0 and worker 1 get subscribers of "a": one subscribe.
        node.worker_joined("a");
        node.worker_joined("a");
        node.worker_joined("b");
        assert_eq!(
            bridge.take(),
            [Call::Subscribe("a".into()), Call::Subscribe("b".into())]
        );
        // One worker's last subscriber leaves: the other still has some.
        node.worker_left("a");
        assert_eq!(bridge.take(), []);
        node.worker_left("a");
        node.worker_left("b");
        assert_eq!(
            bridge.take(),
            [Call::Unsubscribe("a".into()), Call::Unsubscribe("b".into())]
        );
        // Back from zero: subscribed again.
        node.worker_joined("a");
        assert_eq!(bridge.take(), [Call::Subscribe("a".into())]);
    }

    #[test]
    fn concurrent_workers_leave_the_count_consistent() {
        let bridge = Arc::new(RecordingBridge::default());
        let node = Arc::new(NodeTopics::new(bridge.clone()));
        let threads: Vec<_> = (0..4)
            .map(|_| {
                let node = node.clone();
                std::thread::spawn(move || {
                    for _ in 0..1000 {
                        node.worker_joined("t");
                        node.worker_left("t");
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        // The calls alternate, starting with subscribe, and end unsubscribed.
        let calls = bridge.take();
        assert!(!calls.is_empty());
        for (i, call) in calls.iter().enumerate() {
            let want = if i % 2 == 0 {
                Call::Subscribe("t".into())
            } else {
                Call::Unsubscribe("t".into())
            };
            assert_eq!(*call, want, "call {i}");
        }
        assert_eq!(calls.len() % 2, 0);
    }
}
