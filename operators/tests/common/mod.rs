//! Helpers shared by the operator integration tests.

use timely::dataflow::ProbeHandle;
use timely::progress::Timestamp;
use timely::worker::Worker;

/// Runs `body` on `workers` timely workers of this process and waits for all of them;
/// panics if timely cannot start or any worker fails.
pub fn execute_on(workers: usize, body: impl Fn(&mut Worker) + Send + Sync + 'static) {
    timely::execute(timely::Config::process(workers), body)
        .expect("timely runs")
        .join()
        .into_iter()
        .for_each(|r| r.expect("worker finished"));
}

/// Steps `worker` until everything its inputs sent has passed `probe`.
pub fn step_until_done<T: Timestamp>(worker: &mut Worker, probe: &ProbeHandle<T>) {
    while !probe.done() {
        worker.step();
    }
}
