//! One simulated host for the memory-port tests: its tables, pipeline and
//! one memory port per topology port, driven by the loop body the live
//! workers run (`dataplane::forward_burst`).
#![allow(dead_code)]

use vxrouter::config::Topology;
use vxrouter::dataplane::{self, Pipeline, Tables, Verdict};
use vxrouter::port::mem::MemPort;
use vxrouter::port::{Batch, LinkType, Port, BATCH_SIZE};

pub struct Node {
    pub t: Tables,
    pub pipe: Pipeline,
    pub ports: Vec<MemPort>,
    pub tx: Vec<u64>,
    /// Super-packet buffers (as the workers have) or one-frame ones.
    batch: Batch,
}

impl Node {
    /// Host `name` of `topo` with one-frame buffers and ports that take no
    /// super-packets.
    pub fn new(topo: &Topology, name: &str) -> Node {
        Self::with(topo, name, false, false)
    }

    /// Host `name` of `topo`: `super_batch` gives it the workers'
    /// super-packet buffers, `takes_gso` makes every port take super-packets
    /// whole.
    pub fn with(topo: &Topology, name: &str, super_batch: bool, takes_gso: bool) -> Node {
        let h = topo.host_index(name).unwrap();
        let t = vxrouter::replay::replay_tables(topo, h, 1500).unwrap();
        let ports: Vec<MemPort> = t
            .ports
            .iter()
            .map(|p| {
                let lt = if p.role == dataplane::PortRole::Tun {
                    LinkType::RawIp
                } else {
                    LinkType::Ethernet
                };
                let mut m = MemPort::new(p.name.clone(), lt);
                m.set_takes_gso(takes_gso);
                m
            })
            .collect();
        let n = ports.len();
        Node {
            t,
            pipe: Pipeline::new(),
            ports,
            tx: vec![0; n],
            batch: if super_batch {
                Batch::new_super()
            } else {
                Batch::new()
            },
        }
    }

    /// The index of port `name`.
    pub fn idx(&self, name: &str) -> usize {
        self.t.port_index(name).unwrap() as usize
    }

    pub fn port(&mut self, name: &str) -> &mut MemPort {
        let i = self.idx(name);
        &mut self.ports[i]
    }

    /// Drains every port's rx queue through the pipeline. Returns the
    /// packets read.
    pub fn run(&mut self) -> usize {
        let mut verdicts = [Verdict::Pass; BATCH_SIZE];
        let mut total = 0;
        for i in 0..self.ports.len() {
            loop {
                let n = self.ports[i].rx_burst(&mut self.batch).unwrap();
                if n == 0 {
                    break;
                }
                total += n;
                let mut dyn_ports: Vec<Option<&mut dyn Port>> = self
                    .ports
                    .iter_mut()
                    .map(|p| Some(p as &mut dyn Port))
                    .collect();
                dataplane::forward_burst(
                    &mut self.pipe,
                    &self.t,
                    i as u16,
                    &mut self.batch,
                    &mut verdicts,
                    &mut dyn_ports,
                    &mut self.tx,
                )
                .unwrap();
            }
        }
        total
    }
}
