package ipam

import (
	"errors"
	"io/fs"
	"net"
	"net/netip"
	"os"
	"slices"
	"strings"

	"github.com/containernetworking/plugins/plugins/ipam/host-local/backend"
	"github.com/containernetworking/plugins/plugins/ipam/host-local/backend/disk"
)

// indexed is the disk backend with the leases indexed by owner: the
// allocator's GetByID and ReleaseByID read the index instead of every lease
// file. Lease files and their contents stay exactly the disk backend's
// ("<container id>\r\n<ifname>", older ones "<container id>"), so the
// directory can be read by the host-local plugin, and an index rebuilt by
// Open, at any time. Not safe for concurrent use (Store locks).
type indexed struct {
	*disk.Store
	dir  string
	byID map[string][]netip.Addr // lease file content → addresses
}

var _ backend.Store = (*indexed)(nil)

// newIndexed reads every lease of dir into the index.
func newIndexed(d *disk.Store, dir string) (*indexed, error) {
	x := &indexed{Store: d, dir: dir, byID: map[string][]netip.Addr{}}
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	for _, e := range entries {
		ip, err := netip.ParseAddr(e.Name())
		if err != nil || e.IsDir() {
			continue // the lock, last_reserved_ip.*
		}
		b, err := os.ReadFile(disk.GetEscapedPath(dir, e.Name()))
		if err != nil {
			return nil, err
		}
		owner := strings.TrimSpace(string(b))
		x.byID[owner] = append(x.byID[owner], ip)
	}
	return x, nil
}

// owner is the content of a lease file of (id, ifname).
func owner(id, ifname string) string { return strings.TrimSpace(id) + disk.LineBreak + ifname }

// Reserve implements backend.Store.
func (x *indexed) Reserve(id, ifname string, ip net.IP, rangeID string) (bool, error) {
	ok, err := x.Store.Reserve(id, ifname, ip, rangeID)
	if ok && err == nil {
		a, _ := netip.AddrFromSlice(ip)
		k := owner(id, ifname)
		x.byID[k] = append(x.byID[k], a.Unmap())
	}
	return ok, err
}

// GetByID implements backend.Store: the leases of (id, ifname), or those
// an older plugin wrote under the container ID alone.
func (x *indexed) GetByID(id, ifname string) []net.IP {
	var out []net.IP
	for _, k := range []string{owner(id, ifname), strings.TrimSpace(id)} {
		for _, a := range x.byID[k] {
			out = append(out, a.AsSlice())
		}
	}
	return out
}

// ReleaseByID implements backend.Store like the disk backend: the leases of
// (id, ifname), else those of the container ID alone; missing files are no
// error.
func (x *indexed) ReleaseByID(id, ifname string) error {
	k := owner(id, ifname)
	if len(x.byID[k]) == 0 {
		k = strings.TrimSpace(id)
	}
	var errs []error
	for _, a := range slices.Clone(x.byID[k]) {
		err := os.Remove(disk.GetEscapedPath(x.dir, a.String()))
		if err != nil && !errors.Is(err, fs.ErrNotExist) {
			errs = append(errs, err)
			continue
		}
		x.byID[k] = slices.DeleteFunc(x.byID[k], func(b netip.Addr) bool { return b == a })
	}
	if len(x.byID[k]) == 0 {
		delete(x.byID, k)
	}
	return errors.Join(errs...)
}
