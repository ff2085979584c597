//! A real `redis-server` per test: on a free loopback port, in its own
//! temporary directory, with no persistence; stopped by PID when dropped, and
//! restartable on the same port (to test reconnects).

#![allow(dead_code)]

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// How long a starting redis-server may take to answer.
const START: Duration = Duration::from_secs(10);

/// The `redis-server` program: `$REDIS_SERVER`, else the one on `PATH`.
fn program() -> PathBuf {
    if let Some(path) = std::env::var_os("REDIS_SERVER") {
        return path.into();
    }
    for dir in std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default()) {
        let candidate = dir.join("redis-server");
        if candidate.is_file() {
            return candidate;
        }
    }
    panic!(
        "redis-server not found (scripts/test.sh installs it: apt-get install -y redis-server; \
         or set REDIS_SERVER to its path)"
    );
}

/// A running redis-server.
#[derive(Debug)]
pub struct Redis {
    child: Option<Child>,
    port: u16,
    dir: PathBuf,
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
            };
            if redis.spawn() {
                return redis;
            }
        }
        panic!("redis-server did not start on any of 5 free ports");
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

/// A port nobody listens on now.
pub fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind a free port");
    listener.local_addr().unwrap().port()
}
