//! Small `torch.save` files, written the way PyTorch writes them (pickle protocol 2), holding real
//! tensors: the fixtures are 10–140 MB, too slow to fuzz alone.

use std::collections::BTreeMap;

use candle_core::Tensor;

/// One tensor of a state dict: a view (offset, size, stride) of storage `key`.
pub(crate) struct TorchEntry {
    pub(crate) name: String,
    pub(crate) key: String,
    pub(crate) storage: &'static str,
    pub(crate) offset: u32,
    pub(crate) size: Vec<u32>,
    pub(crate) stride: Vec<u32>,
}

/// A storage's bytes and element count.
pub(crate) struct TorchStorage {
    pub(crate) key: String,
    pub(crate) numel: u32,
    pub(crate) bytes: Vec<u8>,
}

/// Real weights in the layouts `torch.save` produces: separate storages, two tensors sharing one
/// storage at different offsets, a transposed (non-contiguous) view, and an int64 counter.
pub(crate) fn torch_entries(t: &BTreeMap<String, Tensor>) -> (Vec<TorchEntry>, Vec<TorchStorage>) {
    let conv = flat(&t["features.0.0.weight"]); // 16×3×3×3
    let bn_w = flat(&t["features.0.1.weight"]);
    let bn_b = flat(&t["features.0.1.bias"]);
    let mean = flat(&t["features.0.1.running_mean"]);
    let f32s = |v: &[f32]| v.iter().flat_map(|x| x.to_le_bytes()).collect::<Vec<u8>>();
    let packed: Vec<f32> = bn_w.iter().chain(&bn_b).copied().collect();
    let storages = vec![
        TorchStorage { key: "0".into(), numel: conv.len() as u32, bytes: f32s(&conv) },
        TorchStorage { key: "1".into(), numel: packed.len() as u32, bytes: f32s(&packed) },
        TorchStorage { key: "2".into(), numel: mean.len() as u32, bytes: f32s(&mean) },
        TorchStorage { key: "3".into(), numel: 1, bytes: 123i64.to_le_bytes().to_vec() },
    ];
    let e = |name: &str, key: &str, storage, offset, size: &[u32], stride: &[u32]| TorchEntry {
        name: name.into(),
        key: key.into(),
        storage,
        offset,
        size: size.to_vec(),
        stride: stride.to_vec(),
    };
    let entries = vec![
        e("features.0.0.weight", "0", "FloatStorage", 0, &[16, 3, 3, 3], &[27, 9, 3, 1]),
        e("features.0.1.weight", "1", "FloatStorage", 0, &[16], &[1]),
        e("features.0.1.bias", "1", "FloatStorage", 16, &[16], &[1]),
        e("features.0.1.running_mean", "2", "FloatStorage", 0, &[16], &[1]),
        e("features.0.1.num_batches_tracked", "3", "LongStorage", 0, &[], &[]),
        e("classifier.transposed", "0", "FloatStorage", 0, &[27, 16], &[1, 27]),
    ];
    (entries, storages)
}

/// Pickle protocol 2 opcodes, as `pickle.Pickler` writes them.
pub(crate) struct Pickle(Vec<u8>);

impl Pickle {
    pub(crate) fn new() -> Self {
        Self(vec![0x80, 2]) // PROTO 2
    }

    pub(crate) fn op(&mut self, op: u8) -> &mut Self {
        self.0.push(op);
        self
    }

    pub(crate) fn global(&mut self, module: &str, name: &str) -> &mut Self {
        self.0.push(b'c');
        self.0.extend(format!("{module}\n{name}\n").bytes());
        self
    }

    pub(crate) fn text(&mut self, s: &str) -> &mut Self {
        self.0.push(b'X'); // BINUNICODE
        self.0.extend((s.len() as u32).to_le_bytes());
        self.0.extend(s.bytes());
        self
    }

    pub(crate) fn int(&mut self, v: u32) -> &mut Self {
        match v {
            0..=0xff => self.0.extend([b'K', v as u8]),
            0x100..=0xffff => {
                self.0.push(b'M');
                self.0.extend((v as u16).to_le_bytes());
            }
            _ => {
                self.0.push(b'J');
                self.0.extend((v as i32).to_le_bytes());
            }
        }
        self
    }

    pub(crate) fn ints(&mut self, v: &[u32]) -> &mut Self {
        self.op(b'('); // MARK
        for &x in v {
            self.int(x);
        }
        self.op(b't') // TUPLE
    }

    /// BINPUT: remember the top of the stack (real files are full of these).
    pub(crate) fn put(&mut self, id: u8) -> &mut Self {
        self.0.extend([b'q', id]);
        self
    }

    pub(crate) fn finish(mut self) -> Vec<u8> {
        self.0.push(b'.'); // STOP
        self.0
    }
}

/// The state-dict pickle: an OrderedDict of `_rebuild_tensor_v2(storage, offset, size, stride,
/// requires_grad, hooks)` whose storages are persistent ids (legacy files add a view field).
pub(crate) fn state_dict_pickle(entries: &[TorchEntry], storages: &[TorchStorage], legacy: bool) -> Vec<u8> {
    let mut p = Pickle::new();
    p.global("collections", "OrderedDict").op(b')').op(b'R').put(0).op(b'(');
    for (i, e) in entries.iter().enumerate() {
        let numel = storages.iter().find(|s| s.key == e.key).map_or(0, |s| s.numel);
        p.text(&e.name).global("torch._utils", "_rebuild_tensor_v2").op(b'(');
        p.op(b'(').text("storage").global("torch", e.storage).text(&e.key).text("cpu").int(numel);
        if legacy {
            p.op(b'N');
        }
        p.op(b't').put(i as u8 + 1).op(b'Q');
        p.int(e.offset).ints(&e.size).ints(&e.stride).op(0x89); // NEWFALSE: requires_grad
        p.global("collections", "OrderedDict").op(b')').op(b'R').op(b't').op(b'R');
    }
    p.op(b'u'); // SETITEMS
    p.finish()
}

pub(crate) fn torch_zip((entries, storages): &(Vec<TorchEntry>, Vec<TorchStorage>)) -> Vec<u8> {
    use std::io::Write as _;
    let mut zip = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    let opts = zip::write::SimpleFileOptions::default().compression_method(zip::CompressionMethod::Stored);
    let mut add = |name: &str, bytes: &[u8]| {
        zip.start_file(format!("archive/{name}"), opts).expect("zip entry");
        zip.write_all(bytes).expect("zip data");
    };
    add("data.pkl", &state_dict_pickle(entries, storages, false));
    add("byteorder", b"little");
    for s in storages {
        add(&format!("data/{}", s.key), &s.bytes);
    }
    add("version", b"3\n");
    zip.finish().expect("zip written").into_inner()
}

pub(crate) fn torch_legacy((entries, storages): &(Vec<TorchEntry>, Vec<TorchStorage>)) -> Vec<u8> {
    // The magic number (an 80-bit LONG1), the protocol version, the system info, the state dict,
    // the storage keys, then each storage as an i64 element count and its bytes.
    let mut out = vec![0x80, 0x02, 0x8a, 0x0a, 0x6c, 0xfc, 0x9c, 0x46, 0xf9, 0x20, 0x6a, 0xa8, 0x50, 0x19, 0x2e];
    let mut p = Pickle::new();
    p.int(1001);
    out.extend(p.finish());
    let mut p = Pickle::new();
    p.op(b'}').op(b'(').text("protocol_version").int(1001).text("little_endian").op(0x88);
    p.text("type_sizes").op(b'}').op(b'(').text("short").int(2).text("int").int(4).text("long").int(4).op(b'u');
    p.op(b'u');
    out.extend(p.finish());
    out.extend(state_dict_pickle(entries, storages, true));
    let mut p = Pickle::new();
    p.op(b']').op(b'(');
    for s in storages {
        p.text(&s.key);
    }
    p.op(b'e'); // APPENDS
    out.extend(p.finish());
    for s in storages {
        out.extend(i64::from(s.numel).to_le_bytes());
        out.extend(&s.bytes);
    }
    out
}

fn flat(t: &Tensor) -> Vec<f32> {
    t.flatten_all().and_then(|t| t.to_vec1::<f32>()).expect("an f32 tensor")
}
