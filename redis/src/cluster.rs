//! Redis Cluster's map from hash slots to shards, for sharded pub/sub: a
//! channel lives on the shard that owns `CRC16(key) mod 16384`, where the key
//! is the channel name or the part inside its first non-empty `{...}`.

use std::time::Duration;

use redis::{ConnectionAddr, ConnectionInfo, Value};

/// A shard's primary: host and port.
pub(crate) type Addr = (String, u16);

/// Hash slots of a Redis Cluster.
pub(crate) const SLOTS: u16 = 16384;

/// CRC16-XMODEM (polynomial 0x1021, initial value 0), the one Redis Cluster
/// hashes keys with.
pub(crate) fn crc16(bytes: &[u8]) -> u16 {
    let mut crc: u16 = 0;
    for &byte in bytes {
        crc ^= u16::from(byte) << 8;
        for _ in 0..8 {
            crc = if crc & 0x8000 != 0 {
                (crc << 1) ^ 0x1021
            } else {
                crc << 1
            };
        }
    }
    crc
}

/// The hash slot of a key or channel, hash tags included.
pub(crate) fn slot(key: &[u8]) -> u16 {
    let hashed = match key.iter().position(|&b| b == b'{') {
        Some(open) => match key[open + 1..].iter().position(|&b| b == b'}') {
            Some(len) if len > 0 => &key[open + 1..open + 1 + len],
            _ => key,
        },
        None => key,
    };
    crc16(hashed) % SLOTS
}

/// Which primary owns which slots.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SlotMap {
    /// `(first, last, primary)`, sorted by `first`; empty for a standalone
    /// Redis, where `single` serves every channel.
    ranges: Vec<(u16, u16, Addr)>,
    single: Option<Addr>,
}

impl SlotMap {
    /// A standalone Redis: one endpoint for every channel.
    pub fn single(addr: Addr) -> Self {
        Self {
            ranges: Vec::new(),
            single: Some(addr),
        }
    }

    pub fn is_cluster(&self) -> bool {
        self.single.is_none()
    }

    /// The primary that owns `channel`'s slot; `None` if no shard covers it
    /// (a cluster in the middle of a change).
    pub fn owner(&self, channel: &[u8]) -> Option<&Addr> {
        if let Some(single) = &self.single {
            return Some(single);
        }
        let slot = slot(channel);
        let i = self.ranges.partition_point(|(first, _, _)| *first <= slot);
        let (first, last, addr) = self.ranges.get(i.checked_sub(1)?)?;
        (*first..=*last).contains(&slot).then_some(addr)
    }

    /// Every primary, to ask for the map next time.
    pub fn primaries(&self) -> Vec<Addr> {
        let mut all: Vec<Addr> = self.single.iter().cloned().collect();
        for (_, _, addr) in &self.ranges {
            if !all.contains(addr) {
                all.push(addr.clone());
            }
        }
        all
    }

    /// Parses a `CLUSTER SLOTS` reply; `seed` stands in for a primary that
    /// reports no host (Redis does when it does not know its own address).
    fn from_cluster_slots(reply: &[Value], seed: &str) -> Result<Self, String> {
        let int = |v: Option<&Value>| match v {
            Some(Value::Int(i)) => u16::try_from(*i).ok(),
            _ => None,
        };
        let mut ranges = Vec::with_capacity(reply.len());
        for range in reply {
            let Value::Array(items) = range else {
                return Err(format!("unexpected CLUSTER SLOTS entry {range:?}"));
            };
            let (Some(first), Some(last)) = (int(items.first()), int(items.get(1))) else {
                return Err(format!("unexpected CLUSTER SLOTS range {items:?}"));
            };
            let Some(Value::Array(primary)) = items.get(2) else {
                return Err(format!("CLUSTER SLOTS range without a primary: {items:?}"));
            };
            let host = match primary.first() {
                Some(Value::BulkString(b)) => String::from_utf8_lossy(b).into_owned(),
                Some(Value::SimpleString(s)) => s.clone(),
                _ => String::new(),
            };
            let host = if host.is_empty() || host == "?" {
                seed.to_owned()
            } else {
                host
            };
            let Some(port) = int(primary.get(1)) else {
                return Err(format!("CLUSTER SLOTS primary without a port: {primary:?}"));
            };
            if first > last || last >= SLOTS {
                return Err(format!("CLUSTER SLOTS range {first}-{last} out of bounds"));
            }
            ranges.push((first, last, (host, port)));
        }
        ranges.sort_by_key(|(first, _, _)| *first);
        Ok(Self {
            ranges,
            single: None,
        })
    }
}

/// The Redis of `info`, at another address (same credentials and database).
pub(crate) fn info_at(info: &ConnectionInfo, addr: &Addr) -> ConnectionInfo {
    info.clone()
        .set_addr(ConnectionAddr::Tcp(addr.0.clone(), addr.1))
}

/// Asks the seeds in turn for the slot map (`CLUSTER SLOTS`); a Redis without
/// cluster support is a standalone one and serves every channel itself.
pub(crate) fn discover(
    info: &ConnectionInfo,
    seeds: &[Addr],
    timeout: Duration,
) -> Result<SlotMap, String> {
    let mut last = String::from("no seed node");
    for seed in seeds {
        let asked = redis::Client::open(info_at(info, seed)).and_then(|client| {
            let mut con = client.get_connection_with_timeout(timeout)?;
            con.set_read_timeout(Some(timeout))?;
            con.set_write_timeout(Some(timeout))?;
            redis::cmd("CLUSTER").arg("SLOTS").query::<Value>(&mut con)
        });
        match asked {
            Ok(Value::Array(reply)) => match SlotMap::from_cluster_slots(&reply, &seed.0) {
                Ok(map) if !map.ranges.is_empty() => return Ok(map),
                Ok(_) => last = format!("{}:{} knows no slots yet", seed.0, seed.1),
                Err(e) => last = e,
            },
            Ok(other) => last = format!("unexpected CLUSTER SLOTS reply {other:?}"),
            Err(e) if e.to_string().contains("cluster support disabled") => {
                return Ok(SlotMap::single(seed.clone()));
            }
            Err(e) => last = format!("{}:{}: {e}", seed.0, seed.1),
        }
    }
    Err(last)
}

/// A refusal that means "not here, or not now": the slot is another shard's
/// (`MOVED`, `ASK`), or the cluster cannot serve it (`CLUSTERDOWN`,
/// `TRYAGAIN`). Asking for the map again and retrying is the answer.
pub(crate) fn is_moved(code: &str) -> bool {
    matches!(code, "MOVED" | "ASK" | "CLUSTERDOWN" | "TRYAGAIN")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crc16_matches_the_redis_cluster_spec() {
        // The test vector of the Redis Cluster specification.
        assert_eq!(crc16(b"123456789"), 0x31C3);
    }

    #[test]
    fn slots_follow_hash_tags() {
        // Values from CLUSTER KEYSLOT on Redis 7.
        assert_eq!(slot(b"foo"), 12182);
        assert_eq!(slot(b"somekey"), 11058);
        assert_eq!(slot(b"{user1000}.following"), slot(b"user1000"));
        assert_ne!(
            slot(b"foo{}{bar}"),
            slot(b"bar"),
            "an empty tag hashes the whole key"
        );
        assert_eq!(slot(b"foo{{bar}}zap"), slot(b"{bar"));
        assert_eq!(slot(b"foo{bar}{zap}"), slot(b"bar"));
    }

    #[test]
    fn only_cluster_refusals_ask_for_a_new_map() {
        for code in ["MOVED", "ASK", "CLUSTERDOWN", "TRYAGAIN"] {
            assert!(is_moved(code), "{code}");
        }
        for code in ["ERR", "WRONGTYPE", "NOAUTH", "moved"] {
            assert!(!is_moved(code), "{code}");
        }
    }

    #[test]
    fn the_map_finds_the_owner_of_each_slot() {
        let addr = |p: u16| ("127.0.0.1".to_string(), p);
        let reply = vec![
            Value::Array(vec![
                Value::Int(5461),
                Value::Int(10922),
                Value::Array(vec![
                    Value::BulkString(b"127.0.0.1".to_vec()),
                    Value::Int(2),
                ]),
            ]),
            Value::Array(vec![
                Value::Int(0),
                Value::Int(5460),
                Value::Array(vec![Value::BulkString(Vec::new()), Value::Int(1)]),
            ]),
        ];
        let map = SlotMap::from_cluster_slots(&reply, "127.0.0.1").unwrap();
        assert!(map.is_cluster());
        // "foo" is slot 12182: nobody owns it in this map.
        assert_eq!(map.owner(b"foo"), None);
        assert_eq!(map.owner(b"somekey"), None);
        let in_first = (0..)
            .map(|i| format!("k{i}"))
            .find(|k| slot(k.as_bytes()) < 5461)
            .unwrap();
        assert_eq!(map.owner(in_first.as_bytes()), Some(&addr(1)));
        let in_second = (0..)
            .map(|i| format!("k{i}"))
            .find(|k| (5461..=10922).contains(&slot(k.as_bytes())))
            .unwrap();
        assert_eq!(map.owner(in_second.as_bytes()), Some(&addr(2)));
        assert_eq!(map.primaries(), vec![addr(1), addr(2)]);
        let single = SlotMap::single(addr(9));
        assert_eq!(single.owner(b"foo"), Some(&addr(9)));
    }
}
