//! What the bench measured: samples over repetitions, their medians, and paired ratios.

/// What one implementation measured, each metric a list over repetitions.
#[derive(Debug, Default)]
pub(super) struct Samples {
    pub(super) latency_median_us: Vec<f64>,
    pub(super) latency_p99_us: Vec<f64>,
    pub(super) throughput_64k: Vec<f64>,
    pub(super) throughput_4k: Vec<f64>,
    pub(super) connect_rate: Vec<f64>,
    pub(super) fds_before: Option<u64>,
    pub(super) fds_after: Option<u64>,
}

#[derive(Debug)]
pub(super) struct Summary {
    pub(super) latency_median_us: f64,
    pub(super) latency_p99_us: f64,
    pub(super) throughput_64k: f64,
    pub(super) throughput_4k: f64,
    pub(super) connect_rate: f64,
    pub(super) fds_before: Option<u64>,
    pub(super) fds_after: Option<u64>,
}

impl Samples {
    /// Keeps the repetition whose server gained the most descriptors.
    pub(super) fn record_fds(&mut self, before: Option<u64>, after: Option<u64>) {
        let (Some(before), Some(after)) = (before, after) else {
            return;
        };
        let gain = |b: u64, a: u64| a as i64 - b as i64;
        let worse = match (self.fds_before, self.fds_after) {
            (Some(b), Some(a)) => gain(before, after) > gain(b, a),
            _ => true,
        };
        if worse {
            self.fds_before = Some(before);
            self.fds_after = Some(after);
        }
    }

    pub(super) fn summary(&self) -> Summary {
        Summary {
            latency_median_us: median(&self.latency_median_us),
            latency_p99_us: median(&self.latency_p99_us),
            throughput_64k: median(&self.throughput_64k),
            throughput_4k: median(&self.throughput_4k),
            connect_rate: median(&self.connect_rate),
            fds_before: self.fds_before,
            fds_after: self.fds_after,
        }
    }
}

pub(super) fn median(values: &[f64]) -> f64 {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    match sorted.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => sorted[n / 2],
        n => (sorted[n / 2 - 1] + sorted[n / 2]) / 2.0,
    }
}

pub(super) struct Ratios {
    pub(super) latency_median: f64,
    pub(super) latency_p99: f64,
    pub(super) throughput_64k: f64,
    pub(super) throughput_4k: f64,
    pub(super) connect_rate: f64,
}

/// Each ratio is the median over repetitions of localsock / raw, the two measured back to
/// back: pairs share the machine's state of the moment, so a load that drifts during the run
/// (other processes, the host) cancels out instead of widening the gap between two medians.
pub(super) fn ratios(samples: &[Samples; 2]) -> Ratios {
    let [lib, raw] = samples;
    Ratios {
        latency_median: paired(&lib.latency_median_us, &raw.latency_median_us),
        latency_p99: paired(&lib.latency_p99_us, &raw.latency_p99_us),
        throughput_64k: paired(&lib.throughput_64k, &raw.throughput_64k),
        throughput_4k: paired(&lib.throughput_4k, &raw.throughput_4k),
        connect_rate: paired(&lib.connect_rate, &raw.connect_rate),
    }
}

/// The median over repetitions of `a / b`, each pair measured back to back (see [`ratios`]).
pub(super) fn paired(a: &[f64], b: &[f64]) -> f64 {
    let each: Vec<f64> = a.iter().zip(b).map(|(a, b)| a / b).collect();
    median(&each)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn medians() {
        assert_eq!(median(&[3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(&[4.0, 1.0, 3.0, 2.0]), 2.5);
        assert!(median(&[]).is_nan());
    }

    #[test]
    fn ratios_pair_each_repetition() {
        // The load swings between repetitions and one localsock sample is hit by a spike: the
        // pairs keep the true 1.1x, a ratio of medians would say 22/30.
        let lib = Samples {
            connect_rate: vec![11.0, 22.0, 33.0, 2.0, 55.0],
            ..Samples::default()
        };
        let raw = Samples {
            connect_rate: vec![10.0, 20.0, 30.0, 40.0, 50.0],
            ..Samples::default()
        };
        assert_eq!(
            median(&lib.connect_rate) / median(&raw.connect_rate),
            22.0 / 30.0
        );
        let r = ratios(&[lib, raw]);
        assert!((r.connect_rate - 1.1).abs() < 1e-9, "{}", r.connect_rate);
    }
}
