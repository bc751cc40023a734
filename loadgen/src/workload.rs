//! The workload: which operation a session sends next.
//!
//! Owns the read ratio, the op mix (weights within reads and within writes) and the seeded RNG
//! every draw comes from. Pure: no I/O, no clock; the same seed gives the same sequence.

use std::fmt;

/// A small, fast, seedable RNG (xoshiro256**, seeded through splitmix64).
#[derive(Clone, Debug)]
pub struct Rng {
    s: [u64; 4],
}

impl Rng {
    pub fn new(seed: u64) -> Rng {
        let mut sm = seed;
        let mut next = || {
            sm = sm.wrapping_add(0x9E37_79B9_7F4A_7C15);
            let mut z = sm;
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            z ^ (z >> 31)
        };
        Rng { s: [next(), next(), next(), next()] }
    }

    pub fn next_u64(&mut self) -> u64 {
        let result = self.s[1].wrapping_mul(5).rotate_left(7).wrapping_mul(9);
        let t = self.s[1] << 17;
        self.s[2] ^= self.s[0];
        self.s[3] ^= self.s[1];
        self.s[1] ^= self.s[2];
        self.s[0] ^= self.s[3];
        self.s[2] ^= t;
        self.s[3] = self.s[3].rotate_left(45);
        result
    }

    /// Uniform in [0, 1).
    pub fn next_f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }

    /// Uniform in [0, n); `n` must be > 0.
    pub fn below(&mut self, n: usize) -> usize {
        ((self.next_u64() as u128 * n as u128) >> 64) as usize
    }
}

/// An entry of the op mix. Reads: `Get`, `Exists`, `Children`. Writes: the rest.
///
/// `Ephemeral` and `Sequential` each stand for a create/delete pair: a session creates such
/// nodes until it holds a few of them, then alternates deleting its oldest and creating a new one,
/// so the tree stays bounded.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum MixKind {
    Get,
    Exists,
    Children,
    Set,
    Ephemeral,
    Sequential,
    Multi,
}

impl MixKind {
    pub const ALL: [MixKind; 7] = [
        MixKind::Get,
        MixKind::Exists,
        MixKind::Children,
        MixKind::Set,
        MixKind::Ephemeral,
        MixKind::Sequential,
        MixKind::Multi,
    ];

    pub fn is_read(self) -> bool {
        matches!(self, MixKind::Get | MixKind::Exists | MixKind::Children)
    }

    pub fn name(self) -> &'static str {
        match self {
            MixKind::Get => "get",
            MixKind::Exists => "exists",
            MixKind::Children => "children",
            MixKind::Set => "set",
            MixKind::Ephemeral => "ephemeral",
            MixKind::Sequential => "sequential",
            MixKind::Multi => "multi",
        }
    }

    pub fn parse(s: &str) -> Option<MixKind> {
        Some(match s.to_ascii_lowercase().replace(['-', '_'], "").as_str() {
            "get" | "getdata" => MixKind::Get,
            "exists" => MixKind::Exists,
            "children" | "getchildren" | "ls" => MixKind::Children,
            "set" | "setdata" => MixKind::Set,
            "ephemeral" | "createephemeral" | "eph" => MixKind::Ephemeral,
            "sequential" | "createsequential" | "seq" => MixKind::Sequential,
            "multi" => MixKind::Multi,
            _ => return None,
        })
    }
}

/// The operation actually sent on the wire, which is what the results are broken down by.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum OpKind {
    GetData,
    Exists,
    GetChildren,
    SetData,
    CreateEphemeral,
    CreateSequential,
    Delete,
    Multi,
}

impl OpKind {
    pub const COUNT: usize = 8;
    pub const ALL: [OpKind; OpKind::COUNT] = [
        OpKind::GetData,
        OpKind::Exists,
        OpKind::GetChildren,
        OpKind::SetData,
        OpKind::CreateEphemeral,
        OpKind::CreateSequential,
        OpKind::Delete,
        OpKind::Multi,
    ];

    pub fn index(self) -> usize {
        self as usize
    }

    pub fn name(self) -> &'static str {
        match self {
            OpKind::GetData => "getData",
            OpKind::Exists => "exists",
            OpKind::GetChildren => "getChildren",
            OpKind::SetData => "setData",
            OpKind::CreateEphemeral => "createEphemeral",
            OpKind::CreateSequential => "createSequential",
            OpKind::Delete => "delete",
            OpKind::Multi => "multi",
        }
    }

    pub fn is_read(self) -> bool {
        matches!(self, OpKind::GetData | OpKind::Exists | OpKind::GetChildren)
    }
}

/// Relative weights of the op kinds; reads and writes are normalised separately.
#[derive(Clone, Debug, PartialEq)]
pub struct OpMix {
    pub weights: Vec<(MixKind, f64)>,
}

impl Default for OpMix {
    /// getData for reads, setData for writes (the ZooKeeper paper's benchmark).
    fn default() -> Self {
        OpMix { weights: vec![(MixKind::Get, 1.0), (MixKind::Set, 1.0)] }
    }
}

impl OpMix {
    /// Parses `get=8,exists=1,set=1,multi=1` (a kind without `=W` has weight 1).
    pub fn parse(spec: &str) -> Result<OpMix, String> {
        let mut weights: Vec<(MixKind, f64)> = Vec::new();
        for part in spec.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (name, w) = match part.split_once(['=', ':']) {
                Some((n, w)) => {
                    let w: f64 = w.trim().parse().map_err(|_| format!("op-mix: bad weight in `{part}`"))?;
                    (n.trim(), w)
                }
                None => (part, 1.0),
            };
            if !(w.is_finite() && w >= 0.0) {
                return Err(format!("op-mix: weight in `{part}` must be a number >= 0"));
            }
            let kind = MixKind::parse(name).ok_or_else(|| {
                format!(
                    "op-mix: unknown op `{name}` (known: {})",
                    MixKind::ALL.iter().map(|k| k.name()).collect::<Vec<_>>().join(", ")
                )
            })?;
            match weights.iter_mut().find(|(k, _)| *k == kind) {
                Some(e) => e.1 += w,
                None => weights.push((kind, w)),
            }
        }
        if weights.iter().all(|(_, w)| *w == 0.0) {
            return Err("op-mix: no op has a weight > 0".into());
        }
        weights.sort_by_key(|(k, _)| *k);
        Ok(OpMix { weights })
    }

    pub fn read_weight(&self) -> f64 {
        self.weights.iter().filter(|(k, _)| k.is_read()).map(|(_, w)| w).sum()
    }

    pub fn write_weight(&self) -> f64 {
        self.weights.iter().filter(|(k, _)| !k.is_read()).map(|(_, w)| w).sum()
    }
}

impl fmt::Display for OpMix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let parts: Vec<String> = self.weights.iter().map(|(k, w)| format!("{}={}", k.name(), w)).collect();
        write!(f, "{}", parts.join(","))
    }
}

/// The fraction of operations that are reads.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ReadRatio(pub f64);

impl ReadRatio {
    /// Parses `R:W` (reads to writes, e.g. `10:1`), `P%` or a bare `P` (percent of reads, 0..100).
    pub fn parse(s: &str) -> Result<ReadRatio, String> {
        let s = s.trim();
        let frac = if let Some((r, w)) = s.split_once(':') {
            let r: f64 = r.trim().parse().map_err(|_| format!("read ratio `{s}`: bad reads count"))?;
            let w: f64 = w.trim().parse().map_err(|_| format!("read ratio `{s}`: bad writes count"))?;
            if r < 0.0 || w < 0.0 || r + w <= 0.0 || !(r + w).is_finite() {
                return Err(format!("read ratio `{s}`: need reads:writes with non-negative numbers"));
            }
            r / (r + w)
        } else {
            let p: f64 = s
                .trim_end_matches('%')
                .trim()
                .parse()
                .map_err(|_| format!("read ratio `{s}`: expected R:W (e.g. 10:1) or a percentage of reads"))?;
            if !(0.0..=100.0).contains(&p) {
                return Err(format!("read ratio `{s}`: percentage must be within 0..100"));
            }
            p / 100.0
        };
        Ok(ReadRatio(frac))
    }

    pub fn percent(self) -> f64 {
        self.0 * 100.0
    }
}

/// Draws op kinds according to a read ratio and an op mix.
#[derive(Clone, Debug)]
pub struct Mixer {
    read_frac: f64,
    reads: Vec<(MixKind, f64)>,
    writes: Vec<(MixKind, f64)>,
}

impl Mixer {
    pub fn new(ratio: ReadRatio, mix: &OpMix) -> Result<Mixer, String> {
        let cumulative = |read: bool| {
            let total: f64 = mix.weights.iter().filter(|(k, _)| k.is_read() == read).map(|(_, w)| w).sum();
            let mut acc = 0.0;
            let mut v = Vec::new();
            for (k, w) in mix.weights.iter().filter(|(k, w)| k.is_read() == read && *w > 0.0) {
                acc += w / total;
                v.push((*k, acc));
            }
            if let Some(last) = v.last_mut() {
                last.1 = 1.0;
            }
            v
        };
        let reads = cumulative(true);
        let writes = cumulative(false);
        if ratio.0 > 0.0 && reads.is_empty() {
            return Err(format!(
                "the read ratio asks for {:.1}% reads but the op mix `{mix}` has no read op (get, exists, children)",
                ratio.percent()
            ));
        }
        if ratio.0 < 1.0 && writes.is_empty() {
            return Err(format!(
                "the read ratio asks for {:.1}% writes but the op mix `{mix}` has no write op (set, ephemeral, \
                 sequential, multi)",
                100.0 - ratio.percent()
            ));
        }
        Ok(Mixer { read_frac: ratio.0, reads, writes })
    }

    pub fn draw(&self, rng: &mut Rng) -> MixKind {
        let class = if rng.next_f64() < self.read_frac { &self.reads } else { &self.writes };
        if class.len() == 1 {
            return class[0].0;
        }
        let u = rng.next_f64();
        class.iter().find(|(_, c)| u < *c).unwrap_or(class.last().expect("non-empty")).0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn fractions(mixer: &Mixer, seed: u64, n: usize) -> HashMap<MixKind, f64> {
        let mut rng = Rng::new(seed);
        let mut counts: HashMap<MixKind, usize> = HashMap::new();
        for _ in 0..n {
            *counts.entry(mixer.draw(&mut rng)).or_default() += 1;
        }
        counts.into_iter().map(|(k, c)| (k, c as f64 / n as f64)).collect()
    }

    #[test]
    fn parses_read_ratios() {
        assert!((ReadRatio::parse("10:1").unwrap().0 - 10.0 / 11.0).abs() < 1e-12);
        assert_eq!(ReadRatio::parse("90%").unwrap().0, 0.9);
        assert_eq!(ReadRatio::parse("0").unwrap().0, 0.0);
        assert_eq!(ReadRatio::parse("100").unwrap().0, 1.0);
        assert_eq!(ReadRatio::parse("1:0").unwrap().0, 1.0);
        assert!(ReadRatio::parse("101").is_err());
        assert!(ReadRatio::parse("0:0").is_err());
        assert!(ReadRatio::parse("x").is_err());
    }

    #[test]
    fn parses_op_mix() {
        let m = OpMix::parse("getData=8, exists=1,children,set=6,create-ephemeral=1,seq=1,multi=0.5").unwrap();
        assert_eq!(m.weights.len(), 7);
        assert_eq!(m.read_weight(), 10.0);
        assert_eq!(m.write_weight(), 8.5);
        assert!(OpMix::parse("frobnicate=1").is_err());
        assert!(OpMix::parse("get=-1").is_err());
        assert!(OpMix::parse("get=0").is_err());
        let round = OpMix::parse(&m.to_string()).unwrap();
        assert_eq!(round, m);
    }

    #[test]
    fn read_ratio_is_honoured_within_tolerance() {
        let n = 400_000;
        for (spec, seed) in [("10:1", 1), ("50%", 2), ("0", 3), ("100", 4), ("1:3", 5)] {
            let ratio = ReadRatio::parse(spec).unwrap();
            let mixer = Mixer::new(ratio, &OpMix::default()).unwrap();
            let f = fractions(&mixer, seed, n);
            let reads = f.get(&MixKind::Get).copied().unwrap_or(0.0);
            let writes = f.get(&MixKind::Set).copied().unwrap_or(0.0);
            assert!((reads - ratio.0).abs() < 0.005, "{spec}: reads {reads} vs {}", ratio.0);
            assert!((reads + writes - 1.0).abs() < 1e-12);
            if ratio.0 == 0.0 {
                assert_eq!(reads, 0.0);
            }
            if ratio.0 == 1.0 {
                assert_eq!(writes, 0.0);
            }
        }
    }

    #[test]
    fn op_weights_are_honoured_within_each_class() {
        let mix = OpMix::parse("get=6,exists=3,children=1,set=2,ephemeral=1,sequential=1").unwrap();
        let ratio = ReadRatio::parse("3:1").unwrap();
        let mixer = Mixer::new(ratio, &mix).unwrap();
        let f = fractions(&mixer, 42, 400_000);
        let expect = [
            (MixKind::Get, 0.75 * 0.6),
            (MixKind::Exists, 0.75 * 0.3),
            (MixKind::Children, 0.75 * 0.1),
            (MixKind::Set, 0.25 * 0.5),
            (MixKind::Ephemeral, 0.25 * 0.25),
            (MixKind::Sequential, 0.25 * 0.25),
        ];
        for (k, want) in expect {
            let got = f.get(&k).copied().unwrap_or(0.0);
            assert!((got - want).abs() < 0.005, "{k:?}: {got} vs {want}");
        }
        assert!(!f.contains_key(&MixKind::Multi));
    }

    #[test]
    fn same_seed_same_sequence() {
        let mixer = Mixer::new(ReadRatio(0.5), &OpMix::parse("get,exists,set,multi").unwrap()).unwrap();
        let (mut a, mut b) = (Rng::new(7), Rng::new(7));
        let sa: Vec<_> = (0..1000).map(|_| mixer.draw(&mut a)).collect();
        let sb: Vec<_> = (0..1000).map(|_| mixer.draw(&mut b)).collect();
        assert_eq!(sa, sb);
        let mut c = Rng::new(8);
        let sc: Vec<_> = (0..1000).map(|_| mixer.draw(&mut c)).collect();
        assert_ne!(sa, sc);
    }

    #[test]
    fn mixer_rejects_impossible_classes() {
        assert!(Mixer::new(ReadRatio(0.5), &OpMix::parse("set").unwrap()).is_err());
        assert!(Mixer::new(ReadRatio(0.5), &OpMix::parse("get").unwrap()).is_err());
        assert!(Mixer::new(ReadRatio(1.0), &OpMix::parse("get").unwrap()).is_ok());
        assert!(Mixer::new(ReadRatio(0.0), &OpMix::parse("set").unwrap()).is_ok());
    }

    #[test]
    fn below_is_in_range_and_uniformish() {
        let mut rng = Rng::new(1);
        let mut hits = [0usize; 10];
        for _ in 0..100_000 {
            hits[rng.below(10)] += 1;
        }
        for h in hits {
            assert!((9_000..11_000).contains(&h), "{hits:?}");
        }
    }
}
