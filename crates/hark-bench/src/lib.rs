//! Shared parts of Hark's load generators: measurement helpers, the baselines every
//! figure is printed next to, and a cluster of real `hark serve` processes.

pub mod baselines;
pub mod cluster;
pub mod figures;
pub mod measure;
pub mod realtime;
