//! The body of the `frame_decoder` fuzz target, in the library so that it also runs on stable
//! Rust: `fuzz/fuzz_targets/frame_decoder.rs` calls it under libFuzzer (nightly, `cargo fuzz`),
//! and `tests/fuzz_corpus.rs` runs it in CI over the checked-in corpus
//! (`fuzz/corpus/frame_decoder/`) and seeded mutations of it.
//!
//! The first input byte picks a chunk size; the rest is the stream. Checked on every input:
//! nothing panics; the stream decodes to the same frames and the same framing error whether it
//! arrives whole or in chunks; every message that decodes re-encodes to a payload that decodes
//! to the same message.

use super::{FrameDecoder, FrameError, Message, MessageError, MIN_MAX_FRAME_BYTES};

type Outcomes = (Vec<(u64, Result<Message, MessageError>)>, Option<FrameError>);

/// Panics (with a message saying which check failed) if `data` breaks a property above.
pub fn check_frame_stream(data: &[u8]) {
    let Some((&chunk_byte, stream)) = data.split_first() else { return };
    let whole = outcomes(stream, stream.len().max(1));
    let chunked = outcomes(stream, usize::from(chunk_byte) + 1);
    assert_eq!(whole, chunked, "chunking changed the outcome");
}

/// Decodes `stream` fed in chunks of `chunk_len` bytes. The smallest allowed maximum frame size
/// keeps the oversized-frame path within reach of short inputs.
fn outcomes(stream: &[u8], chunk_len: usize) -> Outcomes {
    let mut decoder = FrameDecoder::new(MIN_MAX_FRAME_BYTES);
    let mut frames = Vec::new();
    for mut chunk in stream.chunks(chunk_len) {
        loop {
            match decoder.decode(&mut chunk) {
                Ok(Some(frame)) => {
                    assert!(frame.frame_bytes() <= MIN_MAX_FRAME_BYTES as usize);
                    let message = Message::decode(&frame);
                    if let Ok(message) = &message {
                        check_round_trip(message);
                    }
                    frames.push((frame.request_id, message));
                }
                Ok(None) => break,
                Err(lost) => return (frames, Some(lost)),
            }
        }
        assert!(decoder.buffered_bytes() < MIN_MAX_FRAME_BYTES as usize);
    }
    (frames, decoder.finish().err())
}

fn check_round_trip(message: &Message) {
    let mut payload = Vec::new();
    message.encode_payload(&mut payload).expect("a decoded message re-encodes");
    let again = Message::decode_payload(message.msg_type(), &payload).expect("its encoding decodes");
    assert_eq!(&again, message);
}
