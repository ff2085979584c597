//! The record layer's AEADs, ring against aws-lc-rs (with `--features aws-lc`):
//! key setup (what a connection pays to expand its traffic key before a read
//! or a flush), and sealing and opening one TLS record in place, at 20 B and
//! 16 KiB of plaintext, for AES-128-GCM, AES-256-GCM and ChaCha20-Poly1305.
//!
//! ```text
//! cargo bench -p ringws-bench --bench aead [--features aws-lc]
//! ```

use std::hint::black_box;
use std::time::Duration;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};

macro_rules! provider {
    ($name:ident, $label:literal, $aead:path) => {
        mod $name {
            use super::*;
            use $aead::{
                AES_128_GCM, AES_256_GCM, Aad, Algorithm, CHACHA20_POLY1305, LessSafeKey, Nonce,
                UnboundKey,
            };

            fn key(alg: &'static Algorithm) -> LessSafeKey {
                LessSafeKey::new(UnboundKey::new(alg, &[7; 32][..alg.key_len()]).unwrap())
            }

            pub fn bench(c: &mut Criterion) {
                let algs: [(&str, &'static Algorithm); 3] = [
                    ("aes128gcm", &AES_128_GCM),
                    ("aes256gcm", &AES_256_GCM),
                    ("chacha20", &CHACHA20_POLY1305),
                ];
                let mut group = c.benchmark_group(concat!("aead/", $label));
                group.measurement_time(Duration::from_secs(2));
                group.warm_up_time(Duration::from_millis(500));
                for (name, alg) in algs {
                    group.throughput(Throughput::Elements(1));
                    group.bench_function(format!("{name}/key_setup"), |b| {
                        b.iter(|| black_box(key(black_box(alg))))
                    });
                    let k = key(alg);
                    for size in [20usize, 16 << 10] {
                        group.throughput(Throughput::Bytes(size as u64));
                        let mut buf = vec![1u8; size + 16];
                        group.bench_function(format!("{name}/seal/{size}"), |b| {
                            b.iter(|| {
                                let tag = k
                                    .seal_in_place_separate_tag(
                                        Nonce::assume_unique_for_key([3; 12]),
                                        Aad::from([23, 3, 3, 0, 0]),
                                        &mut buf[..size],
                                    )
                                    .unwrap();
                                black_box(tag.as_ref()[0]);
                            })
                        });
                        let mut sealed = vec![1u8; size];
                        let tag = k
                            .seal_in_place_separate_tag(
                                Nonce::assume_unique_for_key([3; 12]),
                                Aad::from([23, 3, 3, 0, 0]),
                                &mut sealed,
                            )
                            .unwrap();
                        sealed.extend_from_slice(tag.as_ref());
                        group.bench_function(format!("{name}/open/{size}"), |b| {
                            b.iter(|| {
                                buf.copy_from_slice(&sealed);
                                let plain = k
                                    .open_in_place(
                                        Nonce::assume_unique_for_key([3; 12]),
                                        Aad::from([23, 3, 3, 0, 0]),
                                        &mut buf,
                                    )
                                    .unwrap();
                                black_box(plain.len());
                            })
                        });
                    }
                }
                group.finish();
            }
        }
    };
}

provider!(with_ring, "ring", ring::aead);
#[cfg(feature = "aws-lc")]
provider!(with_aws_lc, "aws-lc-rs", aws_lc_rs::aead);

fn all(c: &mut Criterion) {
    with_ring::bench(c);
    #[cfg(feature = "aws-lc")]
    with_aws_lc::bench(c);
}

criterion_group!(benches, all);
criterion_main!(benches);
