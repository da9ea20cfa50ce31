//! Criterion benches for request decoding: a Produce request as the broker receives it (header
//! plus body, one 16 KiB batch per partition), decoded with kafka-protocol at the newest version
//! Sluice advertises and at a flexible and a non-flexible version.

use std::hint::black_box;

use bytes::{Buf, BufMut, Bytes, BytesMut};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use kafka_protocol::messages::{ProduceRequest, RequestHeader};
use kafka_protocol::protocol::{Decodable, Encodable, HeaderVersion, StrBytes, decode_request_header_from_buffer};
use sluice_client::batch::{BatchBuilder, BatchOptions, NewRecord};
use sluice_client::requests::{TopicRef, produce_request};

fn batch() -> Bytes {
    let value = [b'x'; 100];
    let mut builder = BatchBuilder::new(BatchOptions::default());
    for _ in 0..150 {
        builder.push(&NewRecord { timestamp_ms: 1, value: Some(&value), ..NewRecord::default() }).expect("fits");
    }
    builder.finish().expect("encodes")
}

/// The bytes after the size prefix: request header and body.
fn encoded_request(version: i16, partitions: i32) -> Bytes {
    let topic = TopicRef::from_name("bench-topic");
    let request = produce_request(&topic, -1, 30_000, (0..partitions).map(|partition| (partition, batch())));
    let header = RequestHeader::default()
        .with_request_api_key(0)
        .with_request_api_version(version)
        .with_correlation_id(7)
        .with_client_id(Some(StrBytes::from_static_str("bench")));
    let mut buffer = BytesMut::new();
    header.encode(&mut buffer, ProduceRequest::header_version(version)).expect("header encodes");
    request.encode(&mut buffer, version).expect("request encodes");
    buffer.freeze()
}

fn decode(c: &mut Criterion) {
    let mut group = c.benchmark_group("produce_request_decode");
    for (version, partitions) in [(3, 1), (9, 1), (11, 1), (11, 16)] {
        let bytes = encoded_request(version, partitions);
        group.throughput(Throughput::Bytes(bytes.len() as u64));
        group.bench_function(format!("v{version}_{partitions}x16KiB"), |b| {
            b.iter(|| {
                let mut frame = black_box(bytes.clone());
                let header = decode_request_header_from_buffer(&mut frame).expect("header decodes");
                let request = ProduceRequest::decode(&mut frame, header.request_api_version).expect("body decodes");
                assert!(!frame.has_remaining());
                black_box(request)
            });
        });
    }
    group.finish();

    let mut group = c.benchmark_group("produce_request_encode");
    let topic = TopicRef::from_name("bench-topic");
    let request = produce_request(&topic, -1, 30_000, [(0, batch())]);
    let mut buffer = BytesMut::with_capacity(64 * 1024);
    group.bench_function("v11_1x16KiB", |b| {
        b.iter(|| {
            buffer.clear();
            buffer.put_i32(0);
            request.encode(&mut buffer, 11).expect("encodes");
            black_box(buffer.len())
        });
    });
    group.finish();
}

criterion_group!(benches, decode);
criterion_main!(benches);
