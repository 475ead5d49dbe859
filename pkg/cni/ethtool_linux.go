package cni

import (
	"fmt"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Legacy ethtool commands for TX checksumming (linux/ethtool.h). The kernel
// maps them onto the device's checksum feature bits, for veths too.
const (
	ethtoolGTXCSUM = 0x16
	ethtoolSTXCSUM = 0x17
)

// ethtoolValue is struct ethtool_value.
type ethtoolValue struct {
	cmd  uint32
	data uint32
}

// ifreqEthtool is struct ifreq with ifr_data pointing at the command;
// the union is 24 bytes on 64-bit kernels.
type ifreqEthtool struct {
	name [unix.IFNAMSIZ]byte
	data unsafe.Pointer
	_    [16]byte
}

// ethtool runs one SIOCETHTOOL value command on ifname in the calling
// thread's network namespace and returns the value.
func ethtool(ifname string, cmd, data uint32) (uint32, error) {
	if len(ifname) >= unix.IFNAMSIZ {
		return 0, fmt.Errorf("ethtool: interface name %q too long", ifname)
	}
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return 0, fmt.Errorf("ethtool: socket: %w", err)
	}
	defer unix.Close(fd)
	v := ethtoolValue{cmd: cmd, data: data}
	req := ifreqEthtool{data: unsafe.Pointer(&v)}
	copy(req.name[:], ifname)
	if _, _, errno := unix.Syscall(unix.SYS_IOCTL, uintptr(fd), unix.SIOCETHTOOL, uintptr(unsafe.Pointer(&req))); errno != 0 {
		return 0, fmt.Errorf("ethtool %s (cmd %#x): %w", ifname, cmd, errno)
	}
	return v.data, nil
}

// setTxChecksum turns TX checksum offload of ifname on or off (ethtool -K
// <if> tx on|off), in the calling thread's network namespace.
func setTxChecksum(ifname string, on bool) error {
	var d uint32
	if on {
		d = 1
	}
	_, err := ethtool(ifname, ethtoolSTXCSUM, d)
	return err
}

// txChecksum reports whether TX checksum offload of ifname is on.
func txChecksum(ifname string) (bool, error) {
	v, err := ethtool(ifname, ethtoolGTXCSUM, 0)
	return v != 0, err
}
