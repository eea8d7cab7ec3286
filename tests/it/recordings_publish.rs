//! Publishing recordings: `publish` waits for a file the PBX is still writing, gives up
//! after `max_wait`, and refuses anything outside the recording directories.

use std::io::{Seek, SeekFrom, Write};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use appliance::recordings::{self, RecordingError};

use crate::recordings::{PUBLIC_URL, fetch, path_of, rec_dirs, start, wav};

#[tokio::test(flavor = "multi_thread")]
async fn publish_waits_until_the_pbx_has_finished_writing() {
    let dirs = rec_dirs();
    let app = start(&dirs, PUBLIC_URL, "30s").await;
    let file = dirs.monitor.join("in-74950000000-1795416368.27.wav");
    let finished = Arc::new(AtomicBool::new(false));

    // Like MixMonitor: the file appears with zero sizes in its header, grows in 20 ms
    // frames, and gets its real sizes when it is closed.
    let writer = {
        let (file, finished) = (file.clone(), finished.clone());
        tokio::spawn(async move {
            let mut ticks = tokio::time::interval(Duration::from_millis(20));
            ticks.tick().await;
            ticks.tick().await;
            let mut f = std::fs::File::create(&file).unwrap();
            f.write_all(&wav(0, false)).unwrap();
            let frame = vec![0x55u8; 320];
            for _ in 0..25 {
                ticks.tick().await;
                f.write_all(&frame).unwrap();
                f.flush().unwrap();
            }
            let audio = 25 * 320u32;
            // Flag first, header second: publish cannot see final sizes before the flag.
            finished.store(true, Ordering::SeqCst);
            f.seek(SeekFrom::Start(4)).unwrap();
            f.write_all(&(36 + audio).to_le_bytes()).unwrap();
            f.seek(SeekFrom::Start(40)).unwrap();
            f.write_all(&audio.to_le_bytes()).unwrap();
            f.sync_all().unwrap();
        })
    };
    // Published before the file even exists: publish waits for it.
    let published = recordings::publish(&app.state.recordings, "call-1", file.to_str().unwrap())
        .await
        .unwrap();
    assert!(
        finished.load(Ordering::SeqCst),
        "published while the recording was still being written"
    );
    writer.await.unwrap();
    let on_disk = std::fs::read(&file).unwrap();
    assert_eq!(on_disk.len(), 44 + 25 * 320);
    let got = fetch(&app, "GET", &path_of(&published), &[]).await;
    assert_eq!(got.status, 200);
    assert_eq!(got.body, on_disk);
    app.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn publish_gives_up_or_refuses_with_a_clear_error() {
    let dirs = rec_dirs();
    let app = start(&dirs, PUBLIC_URL, "300ms").await;
    let publish = |path: String| {
        let state = app.state.clone();
        async move { recordings::publish(&state.recordings, "c", &path).await }
    };

    // Still open after max_wait (a header that never got its sizes).
    let stuck = dirs.monitor.join("stuck.wav");
    std::fs::write(&stuck, wav(16_000, false)).unwrap();
    let e = publish(stuck.display().to_string()).await.unwrap_err();
    assert!(matches!(e, RecordingError::NotComplete { .. }), "{e}");
    assert!(
        e.to_string().contains("stuck.wav") && e.to_string().contains("300ms"),
        "{e}"
    );

    // Never appeared.
    let e = publish("nowhere.wav".into()).await.unwrap_err();
    assert!(matches!(e, RecordingError::NotFound { .. }), "{e}");
    assert!(e.to_string().contains("nowhere.wav"), "{e}");

    // Outside, directly or through a symlink (file or directory), or by climbing.
    let shadow = dirs.outside.join("shadow");
    std::os::unix::fs::symlink(&shadow, dirs.monitor.join("evil.wav")).unwrap();
    std::os::unix::fs::symlink(&dirs.outside, dirs.freeswitch.join("etc")).unwrap();
    for path in [
        shadow.display().to_string(),
        dirs.monitor.join("evil.wav").display().to_string(),
        "evil.wav".to_string(),
        "etc/shadow".to_string(),
        dirs.outside.join("later.wav").display().to_string(),
    ] {
        let e = publish(path.clone()).await.unwrap_err();
        assert!(matches!(e, RecordingError::Outside { .. }), "{path}: {e}");
    }
    for path in [
        "../etc/shadow".to_string(),
        format!("{}/../../../etc/shadow", dirs.monitor.display()),
        String::new(),
    ] {
        let e = publish(path.clone()).await.unwrap_err();
        assert!(matches!(e, RecordingError::Invalid { .. }), "{path}: {e}");
    }

    // Not a regular file.
    std::fs::create_dir(dirs.monitor.join("dir.wav")).unwrap();
    let fifo = dirs.monitor.join("fifo.wav");
    let name = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
    // SAFETY: a valid NUL-terminated path.
    assert_eq!(unsafe { libc::mkfifo(name.as_ptr(), 0o600) }, 0);
    for path in ["dir.wav", "fifo.wav"] {
        let e = publish(path.into()).await.unwrap_err();
        assert!(
            matches!(e, RecordingError::NotRegular { .. }),
            "{path}: {e}"
        );
    }
    let links: i64 = app
        .db()
        .query_row("SELECT count(*) FROM recording_links", [], |r| r.get(0))
        .unwrap();
    assert_eq!(links, 0, "nothing refused was published");
    app.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn publish_needs_a_public_url_and_recording_directories() {
    let dirs = rec_dirs();
    let file = dirs.monitor.join("a.wav");
    std::fs::write(&file, wav(10, true)).unwrap();
    let app = start(&dirs, "", "1s").await;
    let e = recordings::publish(&app.state.recordings, "c", file.to_str().unwrap())
        .await
        .unwrap_err();
    assert!(matches!(e, RecordingError::NoPublicUrl), "{e}");
    assert!(e.to_string().contains("server.public_url"), "{e}");
    app.stop().await.unwrap();

    let app = crate::harness::TestApp::start_with(|c| {
        c.server.public_url = PUBLIC_URL.into();
        c.recordings.dirs.clear();
    })
    .await;
    let e = recordings::publish(&app.state.recordings, "c", file.to_str().unwrap())
        .await
        .unwrap_err();
    assert!(matches!(e, RecordingError::Disabled), "{e}");
    assert!(!recordings::eligible(
        &app.config.recordings,
        file.to_str().unwrap()
    ));
    app.stop().await.unwrap();
}
