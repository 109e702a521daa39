//! An async receiver (tokio) fed by a sync sender on another thread, each
//! with its own peer (in real use, each in its own process: `Peer::join`).
//!
//! `cargo run -p numashm --features tokio --example tokio`

use numashm::pool::{Peer, PeerConfig};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let receiver_peer =
        Peer::create_anonymous("tokio-example", 4, PeerConfig::new("tokio-example-rx"))?;
    let fd = receiver_peer.rendezvous_fd().try_clone_to_owned()?;

    // The sync side: joins through the rendezvous fd, sends ten greetings.
    let sender = std::thread::spawn(
        move || -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
            let peer = Peer::join_fd(fd, PeerConfig::new("tokio-example-tx"))?;
            let tx = peer.sender(0)?;
            for i in 0..10u8 {
                let text = format!("hello #{i}");
                let mut m = tx.alloc(text.len())?;
                m.copy_from_slice(text.as_bytes());
                tx.send_timeout(m, std::time::Duration::from_secs(5))
                    .map_err(|e| e.error)?;
            }
            // Stay until the receiver has returned every slot.
            let until = std::time::Instant::now() + std::time::Duration::from_secs(5);
            while peer.returns().0 < 10 && std::time::Instant::now() < until {
                peer.collect_returns();
                std::thread::sleep(std::time::Duration::from_millis(5));
            }
            Ok(())
        },
    );

    // The async side: a current-thread runtime (a `Peer` is driven by one thread).
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(async {
        let rx = receiver_peer.async_receiver(0)?;
        for _ in 0..10 {
            let msg = rx.recv().await?; // parks on the wake pipe while empty
            println!("got {:?}", std::str::from_utf8(&msg)?);
        }
        Ok::<(), Box<dyn std::error::Error>>(())
    })?;
    sender
        .join()
        .map_err(|_| "the sender panicked")?
        .map_err(|e| e.to_string())?;
    Ok(())
}
