//! Arbitrary bytes into `FrameDecoder`, every frame through `Message::decode`. The checks live
//! in `seqd::protocol::fuzz_check` so that CI runs them on stable over the corpus too.

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| seqd::protocol::fuzz_check::check_frame_stream(data));
