//! Fuzz target: arbitrary bytes as an LTX file. The streaming decoder, the tail-index parser,
//! single-frame decoding and the restore merge must return a typed error or succeed — never
//! panic, hang or allocate without bound. Whatever the decoder accepts must be internally
//! consistent.
#![no_main]

use libfuzzer_sys::fuzz_target;
use ltx::{Compactor, Decoder, PageIndex, decode_frame};

fuzz_target!(|data: &[u8]| {
    let len = data.len() as u64;
    // Streaming decode, page by page.
    let decoded = match Decoder::new(data) {
        Ok(mut dec) => {
            let mut page = vec![0u8; dec.header().page_size as usize];
            let mut pages = Vec::new();
            let result = loop {
                match dec.next_page(&mut page) {
                    Ok(Some(p)) => pages.push(p),
                    Ok(None) => break dec.finish(),
                    Err(e) => break Err(e),
                }
            };
            if let Ok(d) = &result {
                // An accepted file: its index names exactly the pages seen, and its size is
                // the input's.
                let listed: Vec<u32> = d.index.entries().iter().map(|e| e.pgno).collect();
                assert_eq!(listed, pages);
                assert_eq!(d.size, len);
                assert!(d.trailer.file_checksum.has_flag());
            }
            result.ok()
        }
        Err(_) => None,
    };

    // Tail index, then each frame through it.
    let tail = match PageIndex::from_tail(data, len) {
        Ok(index) => Some(index),
        Err(_) => None,
    };
    if let (Some(d), Some(t)) = (&decoded, &tail) {
        assert_eq!(&d.index, t, "tail parser disagrees with the decoder");
    }
    if let Some(index) = tail {
        for ps in [512usize, 4096] {
            let mut page = vec![0u8; ps];
            for e in index.entries().iter().take(64) {
                if let Some(frame) = data.get(e.offset as usize..(e.offset.saturating_add(e.size)) as usize) {
                    let _ = decode_frame(frame, &mut page);
                }
            }
        }
    }

    // The merge (restore into a sink that discards), with the input as a single file and as
    // two halves.
    if let Ok(dec) = Decoder::new(data) {
        if let Ok(c) = Compactor::new(vec![dec]) {
            let _ = c.restore(std::io::sink());
        }
    }
    let mid = data.len() / 2;
    if let (Ok(a), Ok(b)) = (Decoder::new(&data[..mid]), Decoder::new(&data[mid..])) {
        if let Ok(c) = Compactor::new(vec![a, b]) {
            let _ = c.compact(std::io::sink());
        }
    }
});
