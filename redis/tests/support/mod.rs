//! A real `redis-server` per test: on a free loopback port, in its own
//! temporary directory, with no persistence; stopped by PID when dropped, and
//! restartable on the same port (to test reconnects). Or a real Redis Cluster
//! of three such servers, made one with `redis-cli --cluster create`.

#![allow(dead_code)]

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// How long a starting redis-server may take to answer.
const START: Duration = Duration::from_secs(10);

/// How long a new cluster may take to agree that every slot is served.
const CLUSTER_OK: Duration = Duration::from_secs(30);

/// A program: `$variable`, else `name` on `PATH`.
fn find_program(name: &str, variable: &str) -> PathBuf {
    if let Some(path) = std::env::var_os(variable) {
        return path.into();
    }
    for dir in std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default()) {
        let candidate = dir.join(name);
        if candidate.is_file() {
            return candidate;
        }
    }
    panic!(
        "{name} not found (scripts/test.sh installs it: apt-get install -y redis-server, \
         which brings redis-tools; or set {variable} to its path)"
    );
}

/// The `redis-server` program: `$REDIS_SERVER`, else the one on `PATH`.
fn program() -> PathBuf {
    find_program("redis-server", "REDIS_SERVER")
}

/// A running redis-server.
#[derive(Debug)]
pub struct Redis {
    child: Option<Child>,
    port: u16,
    dir: PathBuf,
    /// A cluster node (`--cluster-enabled yes`, its config in `dir`).
    cluster: bool,
}

impl Redis {
    /// Starts a redis-server on `port` (one a bridge was already told about).
    pub fn start_on(port: u16) -> Redis {
        let dir =
            std::env::temp_dir().join(format!("ringws-redis-test-{}-{port}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temporary directory");
        let mut redis = Redis {
            child: None,
            port,
            dir,
            cluster: false,
        };
        redis.restart();
        redis
    }

    /// Starts a redis-server on a free port.
    pub fn start() -> Redis {
        for _ in 0..5 {
            let port = free_port();
            let dir = std::env::temp_dir()
                .join(format!("ringws-redis-test-{}-{port}", std::process::id()));
            std::fs::create_dir_all(&dir).expect("temporary directory");
            let mut redis = Redis {
                child: None,
                port,
                dir,
                cluster: false,
            };
            if redis.spawn() {
                return redis;
            }
        }
        panic!("redis-server did not start on any of 5 free ports");
    }

    /// Starts a cluster-enabled redis-server (not part of a cluster yet) on a
    /// free port whose cluster bus port (+10000) is free too.
    fn start_cluster_node() -> Redis {
        for _ in 0..20 {
            let port = free_port();
            let Some(bus) = port.checked_add(10000) else {
                continue;
            };
            if TcpListener::bind(("127.0.0.1", bus)).is_err() {
                continue;
            }
            let dir = std::env::temp_dir().join(format!(
                "ringws-redis-cluster-{}-{port}",
                std::process::id()
            ));
            let _ = std::fs::remove_dir_all(&dir);
            std::fs::create_dir_all(&dir).expect("temporary directory");
            let mut redis = Redis {
                child: None,
                port,
                dir,
                cluster: true,
            };
            if redis.spawn() {
                return redis;
            }
        }
        panic!("no cluster node started on any of 20 free ports");
    }

    /// The URL for a bridge.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// A client connection for assertions (PUBSUB NUMSUB, PUBLISH).
    pub fn client(&self) -> redis::Connection {
        redis::Client::open(self.url())
            .unwrap()
            .get_connection_with_timeout(Duration::from_secs(5))
            .expect("connect to the test redis-server")
    }

    /// Subscribers Redis counts on `channel` (PUBSUB NUMSUB, or SHARDNUMSUB).
    pub fn numsub(&self, channel: &[u8], sharded: bool) -> i64 {
        let mut con = self.client();
        let sub = if sharded { "SHARDNUMSUB" } else { "NUMSUB" };
        let (_, count): (Vec<u8>, i64) = redis::cmd("PUBSUB")
            .arg(sub)
            .arg(channel)
            .query(&mut con)
            .expect("PUBSUB NUMSUB");
        count
    }

    /// Kills the server (SIGKILL, by PID) and waits for it to be gone.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts the server again on the same port.
    pub fn restart(&mut self) {
        self.kill();
        let deadline = Instant::now() + START;
        while !self.spawn() {
            assert!(
                Instant::now() < deadline,
                "redis-server did not start again on port {}",
                self.port
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Starts redis-server; true once it answers on the port.
    fn spawn(&mut self) -> bool {
        let mut child = Command::new(program())
            .args(["--port", &self.port.to_string()])
            .args(["--bind", "127.0.0.1"])
            .args(["--save", ""])
            .args(["--appendonly", "no"])
            .args(if self.cluster {
                vec![
                    "--cluster-enabled".to_string(),
                    "yes".into(),
                    "--cluster-config-file".into(),
                    format!("nodes-{}.conf", self.port),
                ]
            } else {
                Vec::new()
            })
            .arg("--dir")
            .arg(&self.dir)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn redis-server");
        let addr = SocketAddr::from(([127, 0, 0, 1], self.port));
        let deadline = Instant::now() + START;
        while Instant::now() < deadline {
            if let Ok(Some(_)) = child.try_wait() {
                // Exited: most likely the port was taken meanwhile.
                return false;
            }
            if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
                let ping: redis::RedisResult<String> = redis::Client::open(self.url())
                    .and_then(|c| c.get_connection_with_timeout(Duration::from_secs(1)))
                    .and_then(|mut con| redis::cmd("PING").query(&mut con));
                if ping.is_ok() {
                    self.child = Some(child);
                    return true;
                }
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = child.kill();
        let _ = child.wait();
        false
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        self.kill();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A Redis Cluster of three primaries (no replicas), each a [`Redis`] of its
/// own; stopped by PID when dropped.
#[derive(Debug)]
pub struct Cluster {
    pub nodes: Vec<Redis>,
}

impl Cluster {
    /// Starts three cluster nodes, joins them with `redis-cli --cluster
    /// create` (the slots split in three), and waits until every node says
    /// `cluster_state:ok`.
    pub fn start() -> Cluster {
        let nodes: Vec<Redis> = (0..3).map(|_| Redis::start_cluster_node()).collect();
        let cluster = Cluster { nodes };
        let mut create = Command::new(find_program("redis-cli", "REDIS_CLI"));
        create.args(["--cluster", "create"]);
        for node in &cluster.nodes {
            create.arg(format!("127.0.0.1:{}", node.port));
        }
        let output = create
            .args(["--cluster-replicas", "0", "--cluster-yes"])
            .stdin(Stdio::null())
            .output()
            .expect("run redis-cli --cluster create");
        assert!(
            output.status.success(),
            "redis-cli --cluster create failed: {}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        cluster.wait_ok();
        cluster
    }

    /// Waits (bounded) until every node says `cluster_state:ok`.
    pub fn wait_ok(&self) {
        let deadline = Instant::now() + CLUSTER_OK;
        for node in &self.nodes {
            loop {
                let info: redis::RedisResult<String> = redis::Client::open(node.url())
                    .and_then(|c| c.get_connection_with_timeout(Duration::from_secs(1)))
                    .and_then(|mut con| redis::cmd("CLUSTER").arg("INFO").query(&mut con));
                if info.is_ok_and(|info| info.contains("cluster_state:ok")) {
                    break;
                }
                assert!(
                    Instant::now() < deadline,
                    "the cluster was not ok within {CLUSTER_OK:?} on port {}",
                    node.port
                );
                std::thread::sleep(Duration::from_millis(50));
            }
        }
    }

    /// The URL of the first node: the one a bridge is given as its seed.
    pub fn url(&self) -> String {
        self.nodes[0].url()
    }

    /// The slot of `key`, as Redis computes it (CLUSTER KEYSLOT).
    pub fn keyslot(&self, key: &[u8]) -> u16 {
        redis::cmd("CLUSTER")
            .arg("KEYSLOT")
            .arg(key)
            .query(&mut self.nodes[0].client())
            .expect("CLUSTER KEYSLOT")
    }

    /// The index in [`Self::nodes`] of the node that owns `key`'s slot, by
    /// the cluster's own map (CLUSTER SLOTS).
    pub fn owner(&self, key: &[u8]) -> usize {
        let slot = i64::from(self.keyslot(key));
        let ranges: Vec<(i64, i64, (String, i64))> = redis::cmd("CLUSTER")
            .arg("SLOTS")
            .query::<Vec<redis::Value>>(&mut self.nodes[0].client())
            .expect("CLUSTER SLOTS")
            .into_iter()
            .map(|range| {
                let redis::Value::Array(items) = range else {
                    panic!("CLUSTER SLOTS entry {range:?}")
                };
                let int = |v: &redis::Value| match v {
                    redis::Value::Int(i) => *i,
                    other => panic!("not an integer: {other:?}"),
                };
                let redis::Value::Array(primary) = &items[2] else {
                    panic!("CLUSTER SLOTS primary {items:?}")
                };
                (
                    int(&items[0]),
                    int(&items[1]),
                    (String::new(), int(&primary[1])),
                )
            })
            .collect();
        let (_, _, (_, port)) = ranges
            .iter()
            .find(|(first, last, _)| (*first..=*last).contains(&slot))
            .unwrap_or_else(|| panic!("no node owns slot {slot}"));
        self.nodes
            .iter()
            .position(|n| i64::from(n.port) == *port)
            .expect("the owner is one of ours")
    }

    /// Moves the slot of `key` (no keys live in it) to node `to`, the way
    /// `redis-cli --cluster reshard` does: IMPORTING at the target, MIGRATING
    /// at the source, then SETSLOT NODE everywhere; waits until every node
    /// agrees.
    pub fn move_slot(&self, key: &[u8], to: usize) {
        let slot = self.keyslot(key);
        let from = self.owner(key);
        let id = |i: usize| -> String {
            redis::cmd("CLUSTER")
                .arg("MYID")
                .query(&mut self.nodes[i].client())
                .expect("CLUSTER MYID")
        };
        let (from_id, to_id) = (id(from), id(to));
        let setslot = |i: usize, state: &str, node: &str| {
            let _: () = redis::cmd("CLUSTER")
                .arg("SETSLOT")
                .arg(slot)
                .arg(state)
                .arg(node)
                .query(&mut self.nodes[i].client())
                .unwrap_or_else(|e| panic!("CLUSTER SETSLOT {slot} {state} on node {i}: {e}"));
        };
        setslot(to, "IMPORTING", &from_id);
        setslot(from, "MIGRATING", &to_id);
        setslot(to, "NODE", &to_id);
        setslot(from, "NODE", &to_id);
        for i in (0..self.nodes.len()).filter(|i| *i != from && *i != to) {
            setslot(i, "NODE", &to_id);
        }
        let deadline = Instant::now() + CLUSTER_OK;
        while self.owner(key) != to {
            assert!(Instant::now() < deadline, "slot {slot} did not move");
            std::thread::sleep(Duration::from_millis(50));
        }
        self.wait_ok();
    }

    /// Sharded subscribers of `channel` on the node that owns it (PUBSUB
    /// SHARDNUMSUB there).
    pub fn shard_numsub(&self, channel: &[u8]) -> i64 {
        self.nodes[self.owner(channel)].numsub(channel, true)
    }
}

/// A port nobody listens on now.
pub fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind a free port");
    listener.local_addr().unwrap().port()
}
