//! The control plane's state machines, end to end in one process: the real ECS and VPC
//! services (called through the protocol layer's registry, as the edge calls them), the
//! planner, and the real agent driving the `sim` compute driver through the host contract.
//! No binary, no HTTP, no root: these run everywhere, beside the SDK tests that go through
//! the real clients.
//!
//! Waiting is bounded (a state that never comes fails the test after a generous minute), but
//! no test asserts how long anything takes.

use bytes::Bytes;
use feitian_agent::disks::DiskReconciler;
use feitian_agent::{HostAgent, InstanceReconciler};
use feitian_agent_api::snapshot::PinInfo;
use feitian_agent_api::{ContractError, ControlPlane, DiskStatus, Fut, InstanceStatus, Nudges, Report, VolumeService};
use feitian_api::{ApiError, Caller, Ctx, Params, Registry};
use feitian_compute::sim::SimDriver;
use feitian_compute::{Driver, Observed};
use feitian_meta::Store;
use feitian_planner::Planner;
use serde_json::Value;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

const ECS: &str = "2014-05-26";
const VPC: &str = "2016-04-28";
const REGION: (&str, &str) = ("RegionId", "cn-hangzhou");
const IMAGE: &str = feitian_ecs::images::FEITIAN_LINUX.id;
const INSTANCE_TYPE: &str = "ecs.t6-c1m1.large";

/// A volume as the test's volume service keeps it: size, parent, times re-initialised, and
/// its pins (by snapshot id). It holds no data (nothing writes it), so every pin reads as
/// zeros, holds no range, and is taken at sequence 0.
#[derive(Debug, Clone, PartialEq, Eq)]
struct TestVolume {
    gib: u64,
    parent: Option<String>,
    reinits: u32,
    pins: HashMap<String, PinInfo>,
}

/// The host's volumes, in memory, so a test can see what the disk reconciler did to them.
#[derive(Default)]
struct TestVolumes(Mutex<HashMap<String, TestVolume>>);

impl TestVolumes {
    fn get(&self, name: &str) -> Option<TestVolume> {
        self.0.lock().expect("volumes").get(name).cloned()
    }

    /// The pin `snapshot_id` of volume `name`, refused if there is none.
    fn pinned(&self, name: &str, snapshot_id: &str) -> Result<PinInfo, ContractError> {
        let v = self.0.lock().expect("volumes");
        v.get(name)
            .and_then(|vol| vol.pins.get(snapshot_id).copied())
            .ok_or_else(|| ContractError::Refused(format!("volume {name} has no pin {snapshot_id}")))
    }
}

const GIB: u64 = feitian_agent_api::disk::GIB;

impl VolumeService for TestVolumes {
    fn create(&self, name: String, size_bytes: u64, parent: Option<String>) -> Fut<'_, ()> {
        let mut v = self.0.lock().expect("volumes");
        let vol = v.entry(name).or_insert(TestVolume { gib: 0, parent, reinits: 0, pins: HashMap::new() });
        vol.gib = vol.gib.max(size_bytes / GIB);
        Box::pin(async { Ok(()) })
    }

    fn resize(&self, name: String, size_bytes: u64) -> Fut<'_, ()> {
        let out = match self.0.lock().expect("volumes").get_mut(&name) {
            Some(vol) => {
                vol.gib = vol.gib.max(size_bytes / GIB);
                Ok(())
            }
            None => Err(ContractError::Refused(format!("no volume {name}"))),
        };
        Box::pin(async { out })
    }

    fn reinit(&self, name: String, size_bytes: u64, parent: Option<String>) -> Fut<'_, ()> {
        let mut v = self.0.lock().expect("volumes");
        let reinits = v.get(&name).map_or(0, |x| x.reinits) + 1;
        // The volume is made again: its pins go with the old one.
        v.insert(name, TestVolume { gib: size_bytes / GIB, parent, reinits, pins: HashMap::new() });
        Box::pin(async { Ok(()) })
    }

    fn delete(&self, name: String) -> Fut<'_, ()> {
        self.0.lock().expect("volumes").remove(&name);
        Box::pin(async { Ok(()) })
    }

    fn exists(&self, name: String) -> Fut<'_, bool> {
        let found = self.0.lock().expect("volumes").contains_key(&name);
        Box::pin(async move { Ok(found) })
    }

    fn pin(&self, name: String, snapshot_id: String) -> Fut<'_, PinInfo> {
        let out = match self.0.lock().expect("volumes").get_mut(&name) {
            Some(vol) => {
                let size_bytes = vol.gib * GIB;
                Ok(*vol.pins.entry(snapshot_id).or_insert(PinInfo { next_seq: 0, size_bytes }))
            }
            None => Err(ContractError::Refused(format!("no volume {name}"))),
        };
        Box::pin(async { out })
    }

    fn pinned_ranges(&self, name: String, snapshot_id: String, _since: Option<u64>) -> Fut<'_, Vec<u64>> {
        let out = self.pinned(&name, &snapshot_id).map(|_| Vec::new());
        Box::pin(async { out })
    }

    fn read_pinned(&self, name: String, snapshot_id: String, offset: u64, len: u64) -> Fut<'_, Bytes> {
        let out = self.pinned(&name, &snapshot_id).and_then(|pin| match offset.checked_add(len) {
            Some(end) if end <= pin.size_bytes => Ok(Bytes::from(vec![0u8; len as usize])),
            _ => Err(ContractError::Refused(format!("{len} bytes at {offset} are past the pin's end"))),
        });
        Box::pin(async { out })
    }

    /// These volumes keep no data: a write is accepted by a volume that exists.
    fn write_blocks(&self, name: String, _writes: Vec<(u64, Bytes)>) -> Fut<'_, ()> {
        let exists = self.0.lock().expect("volumes").contains_key(&name);
        Box::pin(async move {
            if exists {
                Ok(())
            } else {
                Err(ContractError::Refused(format!("no volume {name}")))
            }
        })
    }

    fn release_pin(&self, name: String, snapshot_id: String) -> Fut<'_, ()> {
        if let Some(vol) = self.0.lock().expect("volumes").get_mut(&name) {
            vol.pins.remove(&snapshot_id);
        }
        Box::pin(async { Ok(()) })
    }
}

/// No snapshot blocks: these tests make no disk from a snapshot.
struct NoBlocks;

impl feitian_agent_api::BlockStore for NoBlocks {
    fn has(&self, _: String) -> Fut<'_, bool> {
        Box::pin(async { Ok(false) })
    }
    fn put(&self, _: String, _: Bytes) -> Fut<'_, ()> {
        Box::pin(async { Err(ContractError::Refused("no block store in these tests".into())) })
    }
    fn get(&self, _: String) -> Fut<'_, Option<Bytes>> {
        Box::pin(async { Ok(None) })
    }
}

/// One region in one process.
struct Cloud {
    registry: Registry,
    store: Store,
    account: u64,
    network: Arc<feitian_vpc::Network>,
    driver: Arc<SimDriver>,
    planner: Arc<Planner>,
    volumes: Arc<TestVolumes>,
    /// Runs by itself unless the cloud was made with [`Cloud::with_manual_disks`].
    disks: Arc<DiskReconciler>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Drop for Cloud {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

impl Cloud {
    /// The services and the host's agent; the VPC reconciler is started by
    /// [`Cloud::settle_networks`], so that a test can see VPCs while they are `Pending`.
    fn new() -> Cloud {
        let mut cloud = Cloud::with_manual_disks();
        cloud.tasks.push(tokio::spawn(cloud.disks.clone().run()));
        cloud
    }

    /// A cloud whose disk reconciler acts only when a test calls [`Cloud::disk_pass`], so the
    /// test sees each transitional disk status.
    fn with_manual_disks() -> Cloud {
        let store = Store::open_in_memory().expect("store");
        let account = store.create_account("tester").expect("account").id;
        let catalog = Arc::new(feitian_region::Catalog::default());
        let eip_pool: ipnet::Ipv4Net = "198.18.0.0/28".parse().expect("pool");
        let nudges = Nudges::default();
        let network = Arc::new(feitian_vpc::Network {
            store: store.clone(),
            catalog: catalog.clone(),
            eip_pool,
            wake: Arc::new(tokio::sync::Notify::new()),
            nudges: nudges.clone(),
        });
        let ecs = Arc::new(feitian_ecs::Ecs {
            store: store.clone(),
            catalog,
            eip_pool,
            nudges: nudges.clone(),
            host: std::sync::OnceLock::new(),
            admission: feitian_ecs::admission::Policy::default(),
        });
        let mut registry = Registry::default();
        feitian_ecs::register(&mut registry, ecs.clone());
        feitian_vpc::register_vpc_api(&mut registry, network.clone());
        feitian_vpc::register_ecs_api(&mut registry, network.clone());
        let planner = Planner::new(store.clone());
        let driver = Arc::new(SimDriver::new(Duration::from_millis(50)));
        let _ = ecs.host.set(HostAgent::new(driver.clone()));
        let volumes = Arc::new(TestVolumes::default());
        let disks =
            DiskReconciler::new(planner.clone(), driver.clone(), volumes.clone(), Arc::new(NoBlocks), nudges.clone());
        let reconciler = InstanceReconciler::new(planner.clone(), driver.clone(), nudges, None);
        let tasks = vec![tokio::spawn(reconciler.run())];
        Cloud { registry, store, account, network, driver, planner, volumes, disks, tasks }
    }

    /// One pass of the disk reconciler (its steps run on their own tasks).
    async fn disk_pass(&self) {
        self.disks.clone().pass().await.expect("disk pass");
    }

    async fn disk(&self, id: &str) -> Value {
        let v = self.ok(ECS, "DescribeDisks", &[REGION, ("DiskIds", &format!("[\"{id}\"]"))]).await;
        v["Disks"]["Disk"][0].clone()
    }

    async fn disk_status(&self, id: &str) -> String {
        self.disk(id).await["Status"].as_str().unwrap_or("absent").to_owned()
    }

    /// Runs disk passes until the disk is `want`.
    async fn settle_disk(&self, id: &str, want: DiskStatus) {
        self.until(&format!("{id} to be {want}"), || async {
            if self.disk_status(id).await == want.as_str() {
                return Some(());
            }
            self.disk_pass().await;
            None
        })
        .await
    }

    fn settle_networks(&mut self) {
        self.tasks.push(tokio::spawn(feitian_vpc::reconcile::run(self.network.clone())));
    }

    async fn call(&self, version: &str, action: &str, params: &[(&str, &str)]) -> Result<Value, ApiError> {
        let p = Params::from_pairs(params.iter().map(|(k, v)| (k.to_string(), v.to_string())))?;
        let route = self.registry.route(None, version, action)?;
        let ctx = Ctx {
            request_id: "test".into(),
            caller: Caller { account_id: self.account, account_name: "tester".into(), access_key_id: "test".into() },
            product: route.product,
            action: action.into(),
        };
        let reply = route.call(ctx, p).await?;
        Ok(serde_json::from_slice(&reply.to_json("test").expect("renders")).expect("JSON"))
    }

    async fn ok(&self, version: &str, action: &str, params: &[(&str, &str)]) -> Value {
        self.call(version, action, params).await.unwrap_or_else(|e| panic!("{action}: {e}"))
    }

    async fn refused(&self, version: &str, action: &str, params: &[(&str, &str)]) -> ApiError {
        match self.call(version, action, params).await {
            Ok(v) => panic!("{action} succeeded where it must fail: {v}"),
            Err(e) => e,
        }
    }

    /// Polls `probe` until it returns `Some`, for at most a minute.
    async fn until<T, F, Fut>(&self, what: &str, mut probe: F) -> T
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Option<T>>,
    {
        for _ in 0..1200 {
            if let Some(v) = probe().await {
                return v;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("gave up waiting for {what}");
    }

    async fn instance(&self, id: &str) -> Value {
        let v = self.ok(ECS, "DescribeInstances", &[REGION, ("InstanceIds", &format!("[\"{id}\"]"))]).await;
        v["Instances"]["Instance"][0].clone()
    }

    async fn status(&self, id: &str) -> String {
        self.instance(id).await["Status"].as_str().unwrap_or("absent").to_owned()
    }

    async fn wait_status(&self, id: &str, want: InstanceStatus) {
        self.until(&format!("{id} to be {want}"), || async { (self.status(id).await == want.as_str()).then_some(()) })
            .await
    }

    async fn wait_available(&self, action: &str, list: &str, item: &str, id_param: &str, id: &str) {
        self.until(&format!("{id} to be Available"), || async {
            let v = self.ok(VPC, action, &[REGION, (id_param, id)]).await;
            (v[list][item][0]["Status"] == "Available").then_some(())
        })
        .await
    }

    /// A VPC with one vSwitch and one security group, all settled.
    async fn network_for_instances(&mut self) -> (String, String, String) {
        self.settle_networks();
        let vpc = self.ok(VPC, "CreateVpc", &[REGION, ("CidrBlock", "192.168.0.0/16")]).await["VpcId"]
            .as_str()
            .expect("VpcId")
            .to_owned();
        self.wait_available("DescribeVpcs", "Vpcs", "Vpc", "VpcId", &vpc).await;
        let vsw = self
            .ok(
                VPC,
                "CreateVSwitch",
                &[REGION, ("VpcId", &vpc), ("CidrBlock", "192.168.1.0/24"), ("ZoneId", "cn-hangzhou-i")],
            )
            .await["VSwitchId"]
            .as_str()
            .expect("VSwitchId")
            .to_owned();
        self.wait_available("DescribeVSwitches", "VSwitches", "VSwitch", "VSwitchId", &vsw).await;
        let sg = self.ok(ECS, "CreateSecurityGroup", &[REGION, ("VpcId", &vpc)]).await["SecurityGroupId"]
            .as_str()
            .expect("SecurityGroupId")
            .to_owned();
        (vpc, vsw, sg)
    }

    async fn run_instance(&self, vsw: &str, sg: &str) -> String {
        let v = self
            .ok(
                ECS,
                "RunInstances",
                &[
                    REGION,
                    ("ImageId", IMAGE),
                    ("InstanceType", INSTANCE_TYPE),
                    ("VSwitchId", vsw),
                    ("SecurityGroupId", sg),
                ],
            )
            .await;
        v["InstanceIdSets"]["InstanceIdSet"][0].as_str().expect("an instance id").to_owned()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vpcs_and_vswitches_settle_and_guard_what_depends_on_them() {
    let mut cloud = Cloud::new();
    let vpc = cloud.ok(VPC, "CreateVpc", &[REGION, ("CidrBlock", "10.0.0.0/16")]).await["VpcId"]
        .as_str()
        .expect("VpcId")
        .to_owned();
    // Recorded at once, Pending until the control plane settles it.
    let v = cloud.ok(VPC, "DescribeVpcs", &[REGION, ("VpcId", &vpc)]).await;
    assert_eq!(v["Vpcs"]["Vpc"][0]["Status"], "Pending");
    let e = cloud
        .refused(
            VPC,
            "CreateVSwitch",
            &[REGION, ("VpcId", &vpc), ("CidrBlock", "10.0.1.0/24"), ("ZoneId", "cn-hangzhou-i")],
        )
        .await;
    assert_eq!(e.code, "IncorrectVpcStatus");
    assert_eq!(cloud.refused(VPC, "DeleteVpc", &[REGION, ("VpcId", &vpc)]).await.code, "IncorrectVpcStatus");

    cloud.settle_networks();
    cloud.wait_available("DescribeVpcs", "Vpcs", "Vpc", "VpcId", &vpc).await;
    let vsw = cloud
        .ok(VPC, "CreateVSwitch", &[REGION, ("VpcId", &vpc), ("CidrBlock", "10.0.1.0/24"), ("ZoneId", "cn-hangzhou-i")])
        .await["VSwitchId"]
        .as_str()
        .expect("VSwitchId")
        .to_owned();
    cloud.wait_available("DescribeVSwitches", "VSwitches", "VSwitch", "VSwitchId", &vsw).await;
    assert_eq!(cloud.refused(VPC, "DeleteVpc", &[REGION, ("VpcId", &vpc)]).await.code, "DependencyViolation");

    let sg = cloud.ok(ECS, "CreateSecurityGroup", &[REGION, ("VpcId", &vpc)]).await["SecurityGroupId"]
        .as_str()
        .expect("SecurityGroupId")
        .to_owned();
    let id = cloud.run_instance(&vsw, &sg).await;
    assert_eq!(cloud.refused(VPC, "DeleteVSwitch", &[REGION, ("VSwitchId", &vsw)]).await.code, "DependencyViolation");
    cloud.ok(ECS, "DeleteInstance", &[REGION, ("InstanceId", &id), ("Force", "true")]).await;
    cloud.ok(VPC, "DeleteVSwitch", &[REGION, ("VSwitchId", &vsw)]).await;
    let e = cloud.refused(VPC, "DeleteVpc", &[REGION, ("VpcId", &vpc)]).await;
    assert_eq!(e.code, "DependencyViolation.SecurityGroup");
    cloud.ok(ECS, "DeleteSecurityGroup", &[REGION, ("SecurityGroupId", &sg)]).await;
    cloud.ok(VPC, "DeleteVpc", &[REGION, ("VpcId", &vpc)]).await;
    let v = cloud.ok(VPC, "DescribeVpcs", &[REGION]).await;
    assert_eq!(v["TotalCount"], 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_instance_goes_through_its_lifecycle_on_the_host() {
    let mut cloud = Cloud::new();
    let (_, vsw, sg) = cloud.network_for_instances().await;
    let id = cloud.run_instance(&vsw, &sg).await;
    cloud.wait_status(&id, InstanceStatus::Running).await;
    assert_eq!(cloud.driver.observe(&id), Observed::Running, "Running in the API is running on the host");
    let started = cloud.instance(&id).await["StartTime"].as_str().unwrap_or_default().to_owned();
    assert!(!started.is_empty(), "the control plane stamps the start time");

    // The console comes from the host, through the contract.
    let v = cloud.ok(ECS, "GetInstanceConsoleOutput", &[REGION, ("InstanceId", &id)]).await;
    let text = v["ConsoleOutput"].as_str().expect("ConsoleOutput");
    assert!(!text.is_empty());

    // A running instance cannot be deleted without Force.
    let e = cloud.refused(ECS, "DeleteInstance", &[REGION, ("InstanceId", &id)]).await;
    assert_eq!(e.code, "IncorrectInstanceStatus");

    // The API's answer moves the status at once; the host finishes the move.
    cloud.ok(ECS, "StopInstance", &[REGION, ("InstanceId", &id)]).await;
    assert_eq!(cloud.status(&id).await, InstanceStatus::Stopping.as_str());
    cloud.wait_status(&id, InstanceStatus::Stopped).await;
    assert_eq!(cloud.driver.observe(&id), Observed::Stopped);

    cloud.ok(ECS, "StartInstance", &[REGION, ("InstanceId", &id)]).await;
    assert_eq!(cloud.status(&id).await, InstanceStatus::Starting.as_str());
    cloud.wait_status(&id, InstanceStatus::Running).await;

    // A reboot stops and starts the guest, and is done only once.
    cloud.ok(ECS, "RebootInstance", &[REGION, ("InstanceId", &id)]).await;
    assert_eq!(cloud.status(&id).await, InstanceStatus::Stopping.as_str());
    cloud.wait_status(&id, InstanceStatus::Running).await;
    cloud
        .until("the reboot to be done", || async {
            cloud.planner.instances_to_reconcile().await.expect("targets").is_empty().then_some(())
        })
        .await;
    assert!(cloud.driver.console_output(&id).expect("console").matches("[sim] booting").count() >= 3);

    // A forced stop is carried out as forced, and the mark is cleared once done.
    cloud.ok(ECS, "StopInstance", &[REGION, ("InstanceId", &id), ("ForceStop", "true")]).await;
    cloud.wait_status(&id, InstanceStatus::Stopped).await;
    assert!(cloud.driver.console_output(&id).expect("console").contains("power off (forced)"));
    let forced = cloud.store.read(feitian_meta::instance::forced_stops).expect("forced stops");
    assert!(forced.is_empty(), "the forced-stop mark outlived its stop: {forced:?}");

    // Deleted in the API at once; the host destroys what it has of it on its next pass.
    cloud.ok(ECS, "DeleteInstance", &[REGION, ("InstanceId", &id)]).await;
    assert_eq!(cloud.status(&id).await, "absent");
    cloud
        .until("the host to destroy the guest", || async {
            (cloud.driver.observe(&id) == Observed::Absent).then_some(())
        })
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_guest_that_stops_on_its_own_is_recorded() {
    let mut cloud = Cloud::new();
    let (_, vsw, sg) = cloud.network_for_instances().await;
    let id = cloud.run_instance(&vsw, &sg).await;
    cloud.wait_status(&id, InstanceStatus::Running).await;

    // Its virtual machine dies: Stopped, with a SystemFailure.Stop event.
    assert!(cloud.driver.halt(&id, false));
    cloud.wait_status(&id, InstanceStatus::Stopped).await;
    let v = cloud.ok(ECS, "DescribeInstanceHistoryEvents", &[REGION, ("InstanceId", &id)]).await;
    let list = v["InstanceSystemEventSet"]["InstanceSystemEventType"].as_array().cloned().unwrap_or_default();
    assert_eq!(list.len(), 1, "{v}");
    assert_eq!(list[0]["EventType"]["Name"], "SystemFailure.Stop");
    assert_eq!(list[0]["EventCycleStatus"]["Name"], "Executed");

    // It is not started again behind the user's back: Stopped is now what is desired.
    assert!(cloud.planner.instances_to_reconcile().await.expect("targets").iter().all(|t| t.id != id));

    // Its guest shuts down from inside: Stopped, and no event.
    cloud.ok(ECS, "StartInstance", &[REGION, ("InstanceId", &id)]).await;
    cloud.wait_status(&id, InstanceStatus::Running).await;
    assert!(cloud.driver.halt(&id, true));
    cloud.wait_status(&id, InstanceStatus::Stopped).await;
    let v = cloud.ok(ECS, "DescribeInstanceHistoryEvents", &[REGION, ("InstanceId", &id)]).await;
    assert_eq!(v["InstanceSystemEventSet"]["InstanceSystemEventType"].as_array().map(Vec::len), Some(1), "{v}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_host_never_overwrites_what_the_api_decided() {
    let mut cloud = Cloud::new();
    let (_, vsw, sg) = cloud.network_for_instances().await;
    let id = cloud.run_instance(&vsw, &sg).await;
    cloud.wait_status(&id, InstanceStatus::Running).await;
    cloud.ok(ECS, "StopInstance", &[REGION, ("InstanceId", &id)]).await;
    cloud.wait_status(&id, InstanceStatus::Stopped).await;

    // A late report from a host that still thinks the guest runs changes nothing.
    let late = Report::Moved {
        id: id.clone(),
        from: InstanceStatus::Running,
        to: InstanceStatus::Stopping,
        started: false,
        reboot_done: false,
    };
    assert!(!cloud.planner.report(late).await.expect("report"));
    let crashed = Report::StoppedOnItsOwn { id: id.clone(), crashed: true };
    assert!(!cloud.planner.report(crashed).await.expect("report"));
    assert_eq!(cloud.status(&id).await, InstanceStatus::Stopped.as_str());
    let v = cloud.ok(ECS, "DescribeInstanceHistoryEvents", &[REGION, ("InstanceId", &id)]).await;
    assert_eq!(v["TotalCount"], 0, "a lost compare-and-set records no event: {v}");

    // A report about an instance that is gone is a no-op too.
    let gone = Report::Moved {
        id: "i-nosuchinstance".into(),
        from: InstanceStatus::Pending,
        to: InstanceStatus::Starting,
        started: false,
        reboot_done: false,
    };
    assert!(!cloud.planner.report(gone).await.expect("report"));
    assert_eq!(cloud.planner.instance_plan("i-nosuchinstance".into()).await.expect("plan"), None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_eip_follows_its_instance_into_the_plan() {
    let mut cloud = Cloud::new();
    let (vpc, vsw, sg) = cloud.network_for_instances().await;
    let a = cloud.run_instance(&vsw, &sg).await;
    let b = cloud.run_instance(&vsw, &sg).await;
    let private_a = cloud.instance(&a).await["VpcAttributes"]["PrivateIpAddress"]["IpAddress"][0]
        .as_str()
        .expect("a private address")
        .to_owned();

    let v = cloud.ok(VPC, "AllocateEipAddress", &[REGION]).await;
    let (eip, address) =
        (v["AllocationId"].as_str().expect("id").to_owned(), v["EipAddress"].as_str().expect("ip").to_owned());
    let eip_status = |v: Value| v["EipAddresses"]["EipAddress"][0]["Status"].as_str().unwrap_or_default().to_owned();
    assert_eq!(eip_status(cloud.ok(VPC, "DescribeEipAddresses", &[REGION, ("AllocationId", &eip)]).await), "Available");

    cloud.ok(VPC, "AssociateEipAddress", &[REGION, ("AllocationId", &eip), ("InstanceId", &a)]).await;
    let v = cloud.ok(VPC, "DescribeEipAddresses", &[REGION, ("AllocationId", &eip)]).await;
    assert_eq!(eip_status(v.clone()), "InUse");
    assert_eq!(v["EipAddresses"]["EipAddress"][0]["InstanceId"], a.as_str());
    assert_eq!(cloud.instance(&a).await["EipAddress"]["IpAddress"], address.as_str());
    let plan = cloud.planner.vpc_plan(vpc.clone()).await.expect("plan").expect("the VPC holds instances");
    let public: std::net::Ipv4Addr = address.parse().expect("address");
    assert_eq!(plan.nat.get(&public).map(|p| p.to_string()), Some(private_a.clone()));
    assert_eq!(plan.metadata.values().find(|m| m.instance_id == a).map(|m| m.eipv4.clone()), Some(address.clone()));

    // Associating again with the same instance changes nothing; with another, it is refused.
    cloud.ok(VPC, "AssociateEipAddress", &[REGION, ("AllocationId", &eip), ("InstanceId", &a)]).await;
    let e = cloud.refused(VPC, "AssociateEipAddress", &[REGION, ("AllocationId", &eip), ("InstanceId", &b)]).await;
    assert_eq!(e.code, "IncorrectEipStatus");
    let second = cloud.ok(VPC, "AllocateEipAddress", &[REGION]).await["AllocationId"].as_str().expect("id").to_owned();
    let e = cloud.refused(VPC, "AssociateEipAddress", &[REGION, ("AllocationId", &second), ("InstanceId", &a)]).await;
    assert_eq!(e.code, "InvalidAssociation.Duplicated");
    assert_eq!(
        cloud.refused(VPC, "ReleaseEipAddress", &[REGION, ("AllocationId", &eip)]).await.code,
        "IncorrectEipStatus"
    );

    cloud.ok(VPC, "UnassociateEipAddress", &[REGION, ("AllocationId", &eip), ("InstanceId", &a)]).await;
    assert_eq!(eip_status(cloud.ok(VPC, "DescribeEipAddresses", &[REGION, ("AllocationId", &eip)]).await), "Available");
    let plan = cloud.planner.vpc_plan(vpc.clone()).await.expect("plan").expect("the VPC holds instances");
    assert!(plan.nat.is_empty(), "{:?}", plan.nat);

    // Deleting an instance frees its EIP.
    cloud.ok(VPC, "AssociateEipAddress", &[REGION, ("AllocationId", &second), ("InstanceId", &b)]).await;
    cloud.ok(ECS, "DeleteInstance", &[REGION, ("InstanceId", &b), ("Force", "true")]).await;
    let v = cloud.ok(VPC, "DescribeEipAddresses", &[REGION, ("AllocationId", &second)]).await;
    assert_eq!(eip_status(v.clone()), "Available");
    assert_eq!(v["EipAddresses"]["EipAddress"][0]["InstanceId"], "");
    cloud.ok(VPC, "ReleaseEipAddress", &[REGION, ("AllocationId", &eip)]).await;
    cloud.ok(VPC, "ReleaseEipAddress", &[REGION, ("AllocationId", &second)]).await;
    assert_eq!(cloud.ok(VPC, "DescribeEipAddresses", &[REGION]).await["TotalCount"], 0);

    // With its last instance gone, the VPC leaves the hosts' plans.
    cloud.ok(ECS, "DeleteInstance", &[REGION, ("InstanceId", &a), ("Force", "true")]).await;
    assert_eq!(cloud.planner.vpc_plan(vpc).await.expect("plan"), None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_disk_goes_through_its_statuses_on_the_host() {
    let mut cloud = Cloud::with_manual_disks();
    let (_, vsw, sg) = cloud.network_for_instances().await;

    // An instance waits for its system disk's volume, made from its image's.
    let id = cloud.run_instance(&vsw, &sg).await;
    let system = cloud.ok(ECS, "DescribeDisks", &[REGION, ("InstanceId", &id)]).await["Disks"]["Disk"][0]["DiskId"]
        .as_str()
        .expect("a system disk")
        .to_owned();
    assert!(cloud.planner.instances_to_reconcile().await.expect("targets").is_empty(), "no start before its volume");
    assert_eq!(cloud.status(&id).await, InstanceStatus::Pending.as_str());
    cloud
        .until("the instance to run", || async {
            cloud.disk_pass().await;
            (cloud.status(&id).await == InstanceStatus::Running.as_str()).then_some(())
        })
        .await;
    let vol = cloud.volumes.get(&system).expect("the system disk's volume");
    assert_eq!((vol.gib, vol.parent), (20, Some(format!("img-{IMAGE}"))));
    assert_eq!(cloud.driver.attached_disks(&id), vec![system.clone()]);

    // CreateDisk: Creating until the host made its volume, then Available.
    let v = cloud.ok(ECS, "CreateDisk", &[REGION, ("ZoneId", "cn-hangzhou-i"), ("Size", "20")]).await;
    let data = v["DiskId"].as_str().expect("DiskId").to_owned();
    assert_eq!(cloud.disk_status(&data).await, "Creating");
    cloud.settle_disk(&data, DiskStatus::Available).await;
    assert_eq!(cloud.volumes.get(&data).map(|v| (v.gib, v.parent)), Some((20, None)));

    // Attached to a running instance: Attaching until the host plugged it.
    cloud.ok(ECS, "AttachDisk", &[("DiskId", &data), ("InstanceId", &id)]).await;
    assert_eq!(cloud.disk_status(&data).await, "Attaching");
    cloud.settle_disk(&data, DiskStatus::InUse).await;
    assert!(cloud.driver.attached_disks(&id).contains(&data));
    let d = cloud.disk(&data).await;
    assert_eq!((d["InstanceId"].as_str(), d["Device"].as_str()), (Some(id.as_str()), Some("/dev/xvdb")));
    let e = cloud.refused(ECS, "AttachDisk", &[("DiskId", &data), ("InstanceId", &id)]).await;
    assert_eq!(e.code, "IncorrectDiskStatus");

    // Detached: Detaching until the host unplugged it.
    cloud.ok(ECS, "DetachDisk", &[("DiskId", &data), ("InstanceId", &id)]).await;
    assert_eq!(cloud.disk_status(&data).await, "Detaching");
    assert!(
        cloud
            .planner
            .instance_plan(id.clone())
            .await
            .expect("plan")
            .expect("plan")
            .disks
            .iter()
            .all(|d| d.volume != data),
        "a disk being detached is not in its instance's plan"
    );
    cloud.settle_disk(&data, DiskStatus::Available).await;
    assert!(!cloud.driver.attached_disks(&id).contains(&data));
    assert_eq!(cloud.disk(&data).await["InstanceId"], "");

    // To a stopped instance: In_use at once, plugged at its next start.
    cloud.ok(ECS, "StopInstance", &[REGION, ("InstanceId", &id)]).await;
    cloud.wait_status(&id, InstanceStatus::Stopped).await;
    cloud.ok(ECS, "AttachDisk", &[("DiskId", &data), ("InstanceId", &id)]).await;
    assert_eq!(cloud.disk_status(&data).await, "In_use");
    cloud.ok(ECS, "StartInstance", &[REGION, ("InstanceId", &id)]).await;
    cloud.wait_status(&id, InstanceStatus::Running).await;
    assert_eq!(cloud.driver.attached_disks(&id).len(), 2, "booted with both disks");

    // Resized: the size at once, the volume by the host.
    cloud.ok(ECS, "ResizeDisk", &[("DiskId", &data), ("NewSize", "40"), ("Type", "online")]).await;
    assert_eq!(cloud.disk(&data).await["Size"], 40);
    cloud
        .until("the volume to grow", || async {
            cloud.disk_pass().await;
            (cloud.volumes.get(&data).map(|v| v.gib) == Some(40)).then_some(())
        })
        .await;

    // Re-initialised (on a stopped instance): ReIniting until the host reset its volume.
    let e = cloud.refused(ECS, "ReInitDisk", &[("DiskId", &data)]).await;
    assert_eq!(e.code, "IncorrectInstanceStatus");
    cloud.ok(ECS, "StopInstance", &[REGION, ("InstanceId", &id)]).await;
    cloud.wait_status(&id, InstanceStatus::Stopped).await;
    cloud.ok(ECS, "ReInitDisk", &[("DiskId", &system)]).await;
    assert_eq!(cloud.disk_status(&system).await, "ReIniting");
    cloud.settle_disk(&system, DiskStatus::InUse).await;
    let vol = cloud.volumes.get(&system).expect("volume");
    assert_eq!((vol.reinits, vol.parent), (1, Some(format!("img-{IMAGE}"))), "back to its image");

    // A late host report loses its compare-and-set.
    let late = Report::DiskMoved { id: data.clone(), from: DiskStatus::Attaching, to: DiskStatus::InUse };
    assert!(!cloud.planner.report(late).await.expect("report"));

    // Deleting the instance deletes its system disk (and, later, its volume) and leaves the
    // data disk Available.
    cloud.ok(ECS, "DeleteInstance", &[REGION, ("InstanceId", &id)]).await;
    assert_eq!(cloud.disk_status(&system).await, "absent");
    assert_eq!(cloud.disk_status(&data).await, "Available");
    assert_eq!(cloud.planner.volumes_to_delete().await.expect("deletions"), vec![system.clone()]);
    cloud.ok(ECS, "DeleteDisk", &[("DiskId", &data)]).await;
    cloud
        .until("the volumes to be deleted", || async {
            cloud.disk_pass().await;
            let left = cloud.planner.volumes_to_delete().await.expect("deletions");
            (left.is_empty() && cloud.volumes.get(&system).is_none() && cloud.volumes.get(&data).is_none())
                .then_some(())
        })
        .await;
}
