//! `rtt_vs_iceoryx2` (feature `peers`, criterion only): our 64 B round trip
//! vs an iceoryx2 0.10 publish-subscribe ping-pong between two processes,
//! 64 B written and read on each side.
//!
//! Two services, `numashm-bench/<pid>/ping` and `…/pong`, payload `[u8; 64]`.
//! The parent publishes pings and subscribes to pongs; the child (this
//! executable as role `iceoryx2:0`) does the opposite. A sample published
//! before the subscriber exists is dropped, so the parent first pings until a
//! pong comes back (handshake) and drains the extra pongs. iceoryx2 leaves
//! `/dev/shm/iox2_*` files; [`cleanup`] removes the ones of our services and
//! the `…global_mgmt` file once no iceoryx2 service is left.

use std::time::Duration;

use iceoryx2::port::publisher::Publisher;
use iceoryx2::port::subscriber::Subscriber;
use iceoryx2::prelude::*;

use crate::child::{Child, Watchdog, PAYLOAD};

type Msg = [u8; PAYLOAD];

fn services(node: &Node<ipc::Service>, pid: u32) -> Result<(PortFactoryOf, PortFactoryOf), Box<dyn std::error::Error>> {
    let open = |what: &str| -> Result<PortFactoryOf, Box<dyn std::error::Error>> {
        let name: ServiceName = format!("numashm-bench/{pid}/{what}").as_str().try_into()?;
        Ok(node.service_builder(&name).publish_subscribe::<Msg>().open_or_create()?)
    };
    Ok((open("ping")?, open("pong")?))
}

type PortFactoryOf = iceoryx2::service::port_factory::publish_subscribe::PortFactory<ipc::Service, Msg, ()>;

/// The parent's side: a node, its ping publisher and pong subscriber, the child.
pub struct Iceoryx2 {
    publisher: Publisher<ipc::Service, Msg, ()>,
    subscriber: Subscriber<ipc::Service, Msg, ()>,
    _services: (PortFactoryOf, PortFactoryOf),
    _node: Node<ipc::Service>,
    child: Option<Child>,
}

impl Iceoryx2 {
    /// Creates the services and ports, starts the child and does the handshake.
    pub fn start() -> Iceoryx2 {
        let node = NodeBuilder::new().create::<ipc::Service>().expect("iceoryx2 node");
        let pid = std::process::id();
        let (ping, pong) = services(&node, pid).expect("iceoryx2 services");
        let publisher = ping.publisher_builder().create().expect("publisher");
        let subscriber = pong.subscriber_builder().create().expect("subscriber");
        let child = Child::spawn(&format!("iceoryx2:{pid}"));
        let me = Iceoryx2 { publisher, subscriber, _services: (ping, pong), _node: node, child: Some(child) };
        // Handshake: ping until a pong comes back, then drain the extra pongs.
        let mut dog = Watchdog::new("iceoryx2 handshake");
        'shake: loop {
            me.send([1; PAYLOAD]);
            for _ in 0..1000 {
                if me.subscriber.receive().expect("receive").is_some() {
                    break 'shake;
                }
                std::thread::sleep(Duration::from_micros(100));
                for _ in 0..0x10000 {
                    dog.tick();
                }
            }
        }
        std::thread::sleep(Duration::from_millis(20));
        while me.subscriber.receive().expect("receive").is_some() {}
        me
    }

    fn send(&self, payload: Msg) {
        let sample = self.publisher.loan_uninit().expect("loan");
        sample.write_payload(payload).send().expect("send");
    }

    /// One round trip: publish 64 B, busy-poll for the 64 B pong, read it.
    #[inline]
    pub fn round_trip(&self, payload: &Msg) -> u64 {
        self.send(*payload);
        let mut dog = Watchdog::new("iceoryx2 round trip");
        loop {
            if let Some(s) = self.subscriber.receive().expect("receive") {
                return s.payload().iter().map(|&b| u64::from(b)).sum();
            }
            dog.tick();
        }
    }
}

impl Drop for Iceoryx2 {
    fn drop(&mut self) {
        drop(self.child.take());
    }
}

/// The child: subscribe to pings, answer each with a 64 B pong.
pub(crate) fn echo_child(parent: u32) -> Result<(), Box<dyn std::error::Error>> {
    let node = NodeBuilder::new().create::<ipc::Service>()?;
    let (ping, pong) = services(&node, parent)?;
    let subscriber = ping.subscriber_builder().create()?;
    let publisher = pong.publisher_builder().create()?;
    crate::child::signal_ready()?;
    let mut idle = 0u32;
    loop {
        match subscriber.receive()? {
            Some(s) => {
                idle = 0;
                let sum: u64 = s.payload().iter().map(|&b| u64::from(b)).sum();
                drop(s);
                publisher.loan_uninit()?.write_payload([sum as u8; PAYLOAD]).send()?;
            }
            None => {
                idle += 1;
                if idle < 1 << 14 {
                    std::hint::spin_loop();
                } else {
                    std::thread::sleep(Duration::from_micros(50));
                }
            }
        }
    }
}

/// Removes iceoryx2's leftovers of this process's services from `/dev/shm`,
/// and its `…global_mgmt` file when no other iceoryx2 file is left there.
pub fn cleanup() {
    let pid = std::process::id().to_string();
    let Ok(dir) = std::fs::read_dir("/dev/shm") else { return };
    let names: Vec<String> = dir.filter_map(|e| e.ok()).map(|e| e.file_name().to_string_lossy().into_owned()).collect();
    for n in names.iter().filter(|n| n.starts_with("iox2") && n.contains(&pid)) {
        let _ = std::fs::remove_file(format!("/dev/shm/{n}"));
    }
    let others = names.iter().any(|n| n.starts_with("iox2") && !n.contains(&pid) && !n.contains("global_mgmt"));
    if !others {
        for n in names.iter().filter(|n| n.contains("global_mgmt")) {
            let _ = std::fs::remove_file(format!("/dev/shm/{n}"));
        }
    }
}
