//! Fuzz target: pages derived from arbitrary bytes are encoded (either page encoding), then
//! decoded, restored and compacted; everything must come back exactly, and the tail index
//! must agree with the decoder.
#![no_main]

use libfuzzer_sys::fuzz_target;
use ltx::{Compactor, Decoder, Encoder, Header, PageEncoding, PageIndex, TxId};

fuzz_target!(|data: &[u8]| {
    let Some((&ctl, rest)) = data.split_first() else {
        return;
    };
    let page_size = 512u32 << (ctl & 0x3); // 512..4096
    let encoding = if ctl & 0x4 != 0 { PageEncoding::LegacyFrame } else { PageEncoding::Block };
    let ps = page_size as usize;
    // Each page: the next chunk of input, repeated to fill the page (so both repetitive and
    // random pages occur).
    let chunks: Vec<&[u8]> = rest.chunks(ps / 4 + 1).take(8).collect();
    let pages: Vec<Vec<u8>> = chunks
        .iter()
        .map(|c| c.iter().copied().cycle().take(ps).collect::<Vec<u8>>())
        .filter(|p| p.len() == ps)
        .collect();
    let commit = pages.len() as u32;
    let header = Header::new(page_size, commit, TxId(1), TxId(1), 1);
    let mut enc = Encoder::with_encoding(Vec::new(), header, encoding).expect("valid header");
    for (i, p) in pages.iter().enumerate() {
        enc.write_page(i as u32 + 1, p).expect("valid page");
    }
    let file = enc.finish().expect("complete snapshot").writer;

    let mut dec = Decoder::new(&file[..]).expect("our header decodes");
    let mut buf = vec![0u8; ps];
    let mut got = Vec::new();
    while let Some(p) = dec.next_page(&mut buf).expect("our pages decode") {
        assert_eq!(p as usize, got.len() + 1);
        got.push(buf.clone());
    }
    let done = dec.finish().expect("our file verifies");
    assert_eq!(got, pages);
    assert_eq!(PageIndex::from_tail(&file, file.len() as u64).expect("tail"), done.index);

    let restored = Compactor::new(vec![Decoder::new(&file[..]).expect("header")])
        .expect("one input")
        .restore(Vec::new())
        .expect("restore");
    assert_eq!(restored.writer, pages.concat());
    let again = Compactor::new(vec![Decoder::new(&file[..]).expect("header")])
        .expect("one input")
        .compact(Vec::new())
        .expect("compact");
    let d2 = Decoder::verify(&again.writer[..]).expect("compacted file verifies");
    assert_eq!(d2.index.len(), pages.len());
});
