# The Homebrew cask of VM-Desk.app, built by scripts/build-macos-app.sh, for a tap of the
# project's own (homebrew/cask takes only notarized apps; this one is signed ad hoc).
#
# sha256: a placeholder until a release. The build script writes dist/vmdesk.rb, this file
# with the digest of the zip it made, to publish beside that zip as the release asset. Not
# :no_check: that would install whatever bytes the URL serves; an unfilled cask fails its
# checksum instead. `scripts/build-macos-app.sh --check` keeps version, url, app and zap in
# step with the build (vmdesk.__version__, the zip's name, the app's name, platformdirs).
#
# qemu: the vz engine needs nothing else; the qemu engine (TPM, port forwarding, other guest
# architectures) needs QEMU. `depends_on formula: "qemu"` would install it and its
# dependencies for everyone, so the caveats say how to add it.
cask "vmdesk" do
  version "0.1.0"
  sha256 "0000000000000000000000000000000000000000000000000000000000000000"

  url "https://github.com/vmdesk/vmdesk/releases/download/v#{version}/VM-Desk-#{version}-macos-arm64.zip"
  name "VM-Desk"
  desc "Virtual machine manager for QEMU and Apple's Virtualization framework"
  homepage "https://github.com/vmdesk/vmdesk"

  depends_on arch: :arm64
  depends_on macos: ">= :ventura"

  app "VM-Desk.app"

  caveats <<~EOS
    VM-Desk runs VMs on Apple's Virtualization framework (the vz engine) as installed.
    The qemu engine (TPM, port forwarding, other guest architectures) needs QEMU:
      brew install qemu

    VM-Desk.app is signed ad hoc, not notarized: the first time, open it with
    Control-click > Open (or System Settings > Privacy & Security > Open Anyway).
  EOS

  # The library holds every VM, disks included: `brew uninstall --zap` deletes them.
  zap trash: [
    "~/Library/Application Support/vmdesk",
    "~/Library/Caches/vmdesk",
    "~/Library/Caches/org.vmdesk.VMDesk",
    "~/Library/HTTPStorages/org.vmdesk.VMDesk",
    "~/Library/Preferences/org.vmdesk.VMDesk.plist",
    "~/Library/Saved Application State/org.vmdesk.VMDesk.savedState",
    "~/Library/WebKit/org.vmdesk.VMDesk",
  ]
end
