//! The thin hidapi layer: list HID devices, pick the configured one, open it for the reader.
//!
//! A scanner is chosen by VID:PID, then by serial number or path when configured. `path` is
//! either the hidapi path (`/dev/hidraw3` on Linux) or, on Linux, the USB port (`1-2.3`), which
//! survives a replug while the hidraw number may not. A scanner often exposes several
//! interfaces; the one whose usage suits the protocol (page 0x8C for HID POS, the keyboard usage
//! for keyboard) is preferred. Nothing here is reached by tests without hardware except the pure
//! `select_device`.

use std::ffi::CString;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use hidapi::{DeviceInfo, HidApi};
use serde::Serialize;

use crate::config::{HidProtocol, ScannerSettings};
use crate::scanner::reader::{HidPort, HidSource, SpawnError};

/// The USB HID POS usage page of barcode scanners.
pub const USAGE_PAGE_POS: u16 = 0x8C;
/// Generic Desktop page, Keyboard usage.
const USAGE_PAGE_GENERIC_DESKTOP: u16 = 0x01;
const USAGE_KEYBOARD: u16 = 0x06;
/// Pauses are sliced so a stop request ends them quickly.
const PAUSE_SLICE: Duration = Duration::from_millis(50);

/// Why a device could not be opened or read; `kind()` is the variant's name in snake_case.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, strum::IntoStaticStr)]
#[strum(serialize_all = "snake_case")]
pub enum DeviceError {
    #[error("cannot initialise hidapi: {0}")]
    Init(String),
    #[error("no matching HID device is connected")]
    NotFound,
    #[error("cannot open the HID device: {0}")]
    Open(String),
    #[error("cannot read from the HID device: {0}")]
    Read(String),
}

/// One HID interface as `scanner list` shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct HidDeviceSummary {
    pub vid: u16,
    pub pid: u16,
    pub serial: Option<String>,
    pub usage_page: u16,
    pub usage: u16,
    /// hidapi's path, such as `/dev/hidraw3`.
    pub path: String,
    /// The USB port, such as `1-2.3` (Linux only).
    pub port: Option<String>,
    pub manufacturer: Option<String>,
    pub product: Option<String>,
    pub interface: i32,
}

impl HidDeviceSummary {
    fn from_info(info: &DeviceInfo) -> Self {
        let path = info.path().to_string_lossy().into_owned();
        Self {
            vid: info.vendor_id(),
            pid: info.product_id(),
            serial: info.serial_number().map(str::to_owned),
            usage_page: info.usage_page(),
            usage: info.usage(),
            port: usb_port(&path),
            path,
            manufacturer: info.manufacturer_string().map(str::to_owned),
            product: info.product_string().map(str::to_owned),
            interface: info.interface_number(),
        }
    }

    /// The protocol this interface's usage suggests, if any.
    pub fn likely_protocol(&self) -> Option<HidProtocol> {
        match (self.usage_page, self.usage) {
            (USAGE_PAGE_POS, _) => Some(HidProtocol::HidPos),
            (USAGE_PAGE_GENERIC_DESKTOP, USAGE_KEYBOARD) => Some(HidProtocol::Keyboard),
            _ => None,
        }
    }
}

/// Lists every HID interface hidapi sees.
pub fn list_devices() -> Result<Vec<HidDeviceSummary>, DeviceError> {
    let api = HidApi::new().map_err(|e| DeviceError::Init(e.to_string()))?;
    Ok(api.device_list().map(HidDeviceSummary::from_info).collect())
}

/// What identifies the configured scanner.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceSelector {
    pub vid: u16,
    pub pid: u16,
    pub serial: Option<String>,
    pub path: Option<String>,
    pub protocol: HidProtocol,
}

impl DeviceSelector {
    fn describe(&self) -> String {
        format!("{:04x}:{:04x}", self.vid, self.pid)
    }
}

/// Picks the configured device: VID:PID, serial and path must match; an interface whose usage
/// suits the protocol wins over the others.
pub fn select_device<'a>(
    devices: &'a [HidDeviceSummary],
    selector: &DeviceSelector,
) -> Option<&'a HidDeviceSummary> {
    let mut candidates = devices.iter().filter(|d| {
        d.vid == selector.vid
            && d.pid == selector.pid
            && selector
                .serial
                .as_ref()
                .is_none_or(|s| d.serial.as_ref() == Some(s))
            && selector
                .path
                .as_ref()
                .is_none_or(|p| *p == d.path || d.port.as_ref() == Some(p))
    });
    let first = candidates.clone().next()?;
    Some(
        candidates
            .find(|d| d.likely_protocol() == Some(selector.protocol))
            .unwrap_or(first),
    )
}

/// The USB port (`1-2.3`) of a Linux hidraw node, read from sysfs.
fn usb_port(path: &str) -> Option<String> {
    let name = path.strip_prefix("/dev/")?;
    let device = std::fs::canonicalize(format!("/sys/class/hidraw/{name}/device")).ok()?;
    // The last component shaped like `<bus>-<port>[.<port>...]`, before the interface (`:1.0`).
    device
        .components()
        .filter_map(|c| c.as_os_str().to_str())
        .rfind(|c| is_usb_port(c))
        .map(str::to_owned)
}

fn is_usb_port(component: &str) -> bool {
    let Some((bus, ports)) = component.split_once('-') else {
        return false;
    };
    !bus.is_empty()
        && bus.bytes().all(|b| b.is_ascii_digit())
        && !ports.is_empty()
        && ports
            .split('.')
            .all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()))
}

/// The configured device, opened through hidapi on each attempt.
#[derive(Debug, Clone)]
pub struct HidApiSource {
    selector: DeviceSelector,
}

impl HidApiSource {
    pub fn new(selector: DeviceSelector) -> Self {
        Self { selector }
    }

    /// The source a `hid` scanner's settings describe.
    pub fn from_settings(settings: &ScannerSettings) -> Result<Self, SpawnError> {
        let (Some(vid), Some(pid)) = (settings.vid, settings.pid) else {
            return Err(SpawnError::MissingDevice);
        };
        let protocol = settings.protocol.ok_or(SpawnError::MissingProtocol)?;
        Ok(Self::new(DeviceSelector {
            vid,
            pid,
            serial: settings.serial.clone(),
            path: settings.path.clone(),
            protocol,
        }))
    }
}

impl HidSource for HidApiSource {
    fn open(&mut self) -> Result<Box<dyn HidPort>, DeviceError> {
        // A fresh context per attempt re-enumerates, which is what finds a replugged device.
        let api = HidApi::new().map_err(|e| DeviceError::Init(e.to_string()))?;
        let devices: Vec<HidDeviceSummary> =
            api.device_list().map(HidDeviceSummary::from_info).collect();
        let chosen = select_device(&devices, &self.selector).ok_or(DeviceError::NotFound)?;
        let path = CString::new(chosen.path.clone())
            .map_err(|_| DeviceError::Open("device path contains a NUL byte".into()))?;
        let device = api
            .open_path(&path)
            .map_err(|e| DeviceError::Open(e.to_string()))?;
        Ok(Box::new(HidApiPort(device)))
    }

    fn pause(&mut self, delay: Duration, stop: &AtomicBool) {
        let mut left = delay;
        while !left.is_zero() && !stop.load(Ordering::Acquire) {
            let slice = left.min(PAUSE_SLICE);
            std::thread::sleep(slice);
            left -= slice;
        }
    }

    fn describe(&self) -> String {
        self.selector.describe()
    }
}

struct HidApiPort(hidapi::HidDevice);

impl HidPort for HidApiPort {
    fn read(&mut self, buf: &mut [u8], timeout: Duration) -> Result<usize, DeviceError> {
        let millis = i32::try_from(timeout.as_millis()).unwrap_or(i32::MAX);
        self.0
            .read_timeout(buf, millis)
            .map_err(|e| DeviceError::Read(e.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn device(path: &str, usage_page: u16, usage: u16) -> HidDeviceSummary {
        HidDeviceSummary {
            vid: 0x0c2e,
            pid: 0x0b61,
            serial: Some("A1".into()),
            usage_page,
            usage,
            path: path.into(),
            port: Some("1-2.3".into()),
            manufacturer: Some("Honeywell".into()),
            product: Some("Scanner".into()),
            interface: 0,
        }
    }

    fn selector(protocol: HidProtocol) -> DeviceSelector {
        DeviceSelector {
            vid: 0x0c2e,
            pid: 0x0b61,
            serial: None,
            path: None,
            protocol,
        }
    }

    #[test]
    fn prefers_the_interface_that_suits_the_protocol() {
        let devices = [
            device("/dev/hidraw1", 0x01, 0x06),
            device("/dev/hidraw2", 0x8C, 0x02),
        ];
        let pos = select_device(&devices, &selector(HidProtocol::HidPos)).unwrap();
        assert_eq!(pos.path, "/dev/hidraw2");
        let kbd = select_device(&devices, &selector(HidProtocol::Keyboard)).unwrap();
        assert_eq!(kbd.path, "/dev/hidraw1");
        // Without a suitable usage, the first match is taken.
        let devices = [device("/dev/hidraw5", 0xFF00, 0x01)];
        let any = select_device(&devices, &selector(HidProtocol::HidPos)).unwrap();
        assert_eq!(any.path, "/dev/hidraw5");
    }

    #[test]
    fn vid_pid_serial_and_path_must_match() {
        let mut other = device("/dev/hidraw9", 0x8C, 0x02);
        other.pid = 0x0001;
        let devices = [other, device("/dev/hidraw2", 0x8C, 0x02)];
        let mut s = selector(HidProtocol::HidPos);
        assert_eq!(select_device(&devices, &s).unwrap().path, "/dev/hidraw2");
        s.serial = Some("B2".into());
        assert!(select_device(&devices, &s).is_none());
        s.serial = Some("A1".into());
        s.path = Some("1-2.3".into());
        assert_eq!(select_device(&devices, &s).unwrap().path, "/dev/hidraw2");
        s.path = Some("/dev/hidraw2".into());
        assert_eq!(select_device(&devices, &s).unwrap().path, "/dev/hidraw2");
        s.path = Some("1-4".into());
        assert!(select_device(&devices, &s).is_none());
        assert!(select_device(&[], &selector(HidProtocol::Keyboard)).is_none());
    }

    #[test]
    fn usb_port_components() {
        for good in ["1-2", "1-2.3", "3-10.4.1"] {
            assert!(is_usb_port(good), "{good}");
        }
        for bad in [
            "usb1",
            "1-2:1.0",
            "0003:0C2E:0B61.0001",
            "-2",
            "1-",
            "1-2..3",
            "a-1",
        ] {
            assert!(!is_usb_port(bad), "{bad}");
        }
    }
}
