// Package vnid holds the virtual network IDs (VNIDs) that isolate
// namespaces from each other: the sdn-controller's Allocator, and the node
// agent's namespace→VNID Map.
//
// A VNID is 24 bits wide because it travels as the VXLAN VNI. Two values are
// special and shared by design: GlobalVNID (0) reaches and is reachable from
// every namespace (the "default" namespace and namespaces made global), and
// ReservedVNID (1) is the control-plane group. IDs 2..9 are reserved and
// unused; MinVNID..MaxVNID are handed out by the Allocator.
package vnid

import "fmt"

// Well-known VNIDs and the allocatable range.
const (
	GlobalVNID   uint32 = 0
	ReservedVNID uint32 = 1
	MinVNID      uint32 = 10
	MaxVNID      uint32 = 1<<24 - 1
)

// Valid reports whether id fits in a VXLAN VNI, that is id <= MaxVNID. Any
// such value may appear in a NetNamespace; only MinVNID..MaxVNID are
// allocated.
func Valid(id uint32) bool { return id <= MaxVNID }

// Allocatable reports whether id is in the range the Allocator hands out.
func Allocatable(id uint32) bool { return id >= MinVNID && id <= MaxVNID }

// Describe names the class of id for logs and the CLI: "global",
// "reserved (control plane)", "reserved", "allocatable" or "invalid".
// It says nothing about whether id is currently in use.
func Describe(id uint32) string {
	switch {
	case id == GlobalVNID:
		return "global"
	case id == ReservedVNID:
		return "reserved (control plane)"
	case id < MinVNID:
		return "reserved"
	case id <= MaxVNID:
		return "allocatable"
	}
	return fmt.Sprintf("invalid (above %d)", MaxVNID)
}
