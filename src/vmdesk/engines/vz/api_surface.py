"""Every Virtualization.framework (and Foundation) name the vz engine touches, checked in.

Each entry is ``"Class"``, ``"Class.selector"`` (PyObjC spelling, ``:`` written ``_``) or a
constant, with the macOS version that introduced it and where that was confirmed:

- ``pyobjc:<file>``: a test in PyObjC's own bindings, directory
  ``pyobjc-framework-Virtualization/PyObjCTest/`` of ronaldoussoren/pyobjc (its
  ``min_os_level`` decorators give the version);
- ``apple:<symbol path>``: Apple's documentation page
  ``https://developer.apple.com/documentation/virtualization/<symbol path>``, whose
  availability line gives the version (``foundation:`` and ``appkit:`` likewise for
  Foundation and AppKit, whose classes the native window and its run loop use).

The recording fake (:mod:`vmdesk.engines.vz.fake`) refuses anything that is not listed here,
so a new call in the engine cannot slip in without its version being looked up. Entries in
:data:`GATED` are used only when the host's macOS has them (the engine checks the version
first); every other entry is needed by every VM, so the newest of those is the oldest macOS
the engine runs on (:data:`MINIMUM_MACOS`).

Nothing here was run on a Mac: versions come from the sources above, not from a machine.
"""

from __future__ import annotations

from typing import NamedTuple


class Api(NamedTuple):
    since: tuple[int, int]
    ref: str


def _a(since: str, ref: str) -> Api:
    major, minor = since.split(".")
    return Api((int(major), int(minor)), ref)


_P = "pyobjc:"
_D = "apple:"

SURFACE: dict[str, Api] = {
    # -- Foundation ---------------------------------------------------------------------
    "NSURL": _a("10.0", "foundation:nsurl"),
    "NSURL.fileURLWithPath_": _a("10.0", "foundation:nsurl/fileurl(withpath:)"),
    "NSFileHandle": _a("10.0", "foundation:filehandle"),
    "NSFileHandle.initWithFileDescriptor_": _a(
        "10.0", "foundation:filehandle/init(filedescriptor:)"
    ),
    "NSError": _a("10.0", "foundation:nserror"),
    "NSError.localizedDescription": _a("10.0", "foundation:nserror/localizeddescription"),
    # -- the main run loop, pumped from the supervisor's asyncio loop (vz/window.py) -------
    "NSRunLoop": _a("10.0", "foundation:runloop"),
    "NSRunLoop.mainRunLoop": _a("10.5", "foundation:runloop/main"),
    "NSRunLoop.runMode_beforeDate_": _a("10.0", "foundation:runloop/run(mode:before:)"),
    "NSDate": _a("10.0", "foundation:nsdate"),
    "NSDate.date": _a("10.0", "foundation:nsdate"),
    "NSDate.distantPast": _a("10.0", "foundation:nsdate/distantpast"),
    # -- the native window (AppKit, on the main thread: vz/window.py) ---------------------
    "NSApplication": _a("10.0", "appkit:nsapplication"),
    "NSApplication.sharedApplication": _a("10.0", "appkit:nsapplication/shared"),
    "NSApplication.setActivationPolicy_": _a(
        "10.6", "appkit:nsapplication/setactivationpolicy(_:)"
    ),
    "NSApplication.finishLaunching": _a("10.0", "appkit:nsapplication/finishlaunching()"),
    "NSApplication.activateIgnoringOtherApps_": _a(
        "10.0", "appkit:nsapplication/activate(ignoringotherapps:)"
    ),
    "NSApplication.nextEventMatchingMask_untilDate_inMode_dequeue_": _a(
        "10.0", "appkit:nsapplication/nextevent(matching:until:inmode:dequeue:)"
    ),
    "NSApplication.sendEvent_": _a("10.0", "appkit:nsapplication/sendevent(_:)"),
    "NSApplication.updateWindows": _a("10.0", "appkit:nsapplication/updatewindows()"),
    "NSWindow": _a("10.0", "appkit:nswindow"),
    "NSWindow.initWithContentRect_styleMask_backing_defer_": _a(
        "10.0", "appkit:nswindow/init(contentrect:stylemask:backing:defer:)"
    ),
    "NSWindow.setTitle_": _a("10.0", "appkit:nswindow/title"),
    "NSWindow.setContentView_": _a("10.0", "appkit:nswindow/contentview"),
    "NSWindow.setReleasedWhenClosed_": _a("10.0", "appkit:nswindow/isreleasedwhenclosed"),
    "NSWindow.makeFirstResponder_": _a("10.0", "appkit:nswindow/makefirstresponder(_:)"),
    "NSWindow.center": _a("10.0", "appkit:nswindow/center()"),
    "NSWindow.makeKeyAndOrderFront_": _a("10.0", "appkit:nswindow/makekeyandorderfront(_:)"),
    "NSWindow.isVisible": _a("10.0", "appkit:nswindow/isvisible"),
    "NSWindow.close": _a("10.0", "appkit:nswindow/close()"),
    "VZVirtualMachineView": _a("12.0", _P + "test_vzvirtualmachineview.py"),
    "VZVirtualMachineView.init": _a("12.0", _D + "vzvirtualmachineview"),
    "VZVirtualMachineView.setVirtualMachine_": _a(
        "12.0", _D + "vzvirtualmachineview/virtualmachine"
    ),
    "VZVirtualMachineView.setCapturesSystemKeys_": _a("12.0", _P + "test_vzvirtualmachineview.py"),
    # -- the configuration --------------------------------------------------------------
    "VZVirtualMachineConfiguration": _a("11.0", _P + "test_vzvirtualmachineconfiguration.py"),
    "VZVirtualMachineConfiguration.init": _a("11.0", _D + "vzvirtualmachineconfiguration"),
    "VZVirtualMachineConfiguration.minimumAllowedCPUCount": _a(
        "11.0", _D + "vzvirtualmachineconfiguration/minimumallowedcpucount"
    ),
    "VZVirtualMachineConfiguration.maximumAllowedCPUCount": _a(
        "11.0", _D + "vzvirtualmachineconfiguration/maximumallowedcpucount"
    ),
    "VZVirtualMachineConfiguration.minimumAllowedMemorySize": _a(
        "11.0", _D + "vzvirtualmachineconfiguration/minimumallowedmemorysize"
    ),
    "VZVirtualMachineConfiguration.maximumAllowedMemorySize": _a(
        "11.0", _D + "vzvirtualmachineconfiguration/maximumallowedmemorysize"
    ),
    "VZVirtualMachineConfiguration.setCPUCount_": _a(
        "11.0", _D + "vzvirtualmachineconfiguration/cpucount"
    ),
    "VZVirtualMachineConfiguration.setMemorySize_": _a(
        "11.0", _D + "vzvirtualmachineconfiguration/memorysize"
    ),
    "VZVirtualMachineConfiguration.setBootLoader_": _a(
        "11.0", _D + "vzvirtualmachineconfiguration/bootloader"
    ),
    "VZVirtualMachineConfiguration.setPlatform_": _a(
        "12.0", _D + "vzvirtualmachineconfiguration/platform"
    ),
    "VZVirtualMachineConfiguration.setStorageDevices_": _a(
        "11.0", _D + "vzvirtualmachineconfiguration/storagedevices"
    ),
    "VZVirtualMachineConfiguration.setNetworkDevices_": _a(
        "11.0", _D + "vzvirtualmachineconfiguration/networkdevices"
    ),
    "VZVirtualMachineConfiguration.setSerialPorts_": _a(
        "11.0", _D + "vzvirtualmachineconfiguration/serialports"
    ),
    "VZVirtualMachineConfiguration.setEntropyDevices_": _a(
        "11.0", _D + "vzvirtualmachineconfiguration/entropydevices"
    ),
    "VZVirtualMachineConfiguration.setMemoryBalloonDevices_": _a(
        "11.0", _D + "vzvirtualmachineconfiguration/memoryballoondevices"
    ),
    "VZVirtualMachineConfiguration.setGraphicsDevices_": _a(
        "12.0", _D + "vzvirtualmachineconfiguration/graphicsdevices"
    ),
    "VZVirtualMachineConfiguration.setKeyboards_": _a(
        "12.0", _D + "vzvirtualmachineconfiguration/keyboards"
    ),
    "VZVirtualMachineConfiguration.setPointingDevices_": _a(
        "12.0", _D + "vzvirtualmachineconfiguration/pointingdevices"
    ),
    "VZVirtualMachineConfiguration.setDirectorySharingDevices_": _a(
        "12.0", _D + "vzvirtualmachineconfiguration/directorysharingdevices"
    ),
    "VZVirtualMachineConfiguration.setConsoleDevices_": _a(
        "13.0", _D + "vzvirtualmachineconfiguration/consoledevices"
    ),
    "VZVirtualMachineConfiguration.validateWithError_": _a(
        "11.0", _P + "test_vzvirtualmachineconfiguration.py"
    ),
    "VZVirtualMachineConfiguration.validateSaveRestoreSupportWithError_": _a(
        "14.0", _P + "test_vzvirtualmachineconfiguration.py"
    ),
    # -- boot loaders and platform ------------------------------------------------------
    "VZLinuxBootLoader": _a("11.0", _D + "vzlinuxbootloader"),
    "VZLinuxBootLoader.initWithKernelURL_": _a("11.0", _D + "vzlinuxbootloader/init(kernelurl:)"),
    "VZLinuxBootLoader.setInitialRamdiskURL_": _a(
        "11.0", _D + "vzlinuxbootloader/initialramdiskurl"
    ),
    "VZLinuxBootLoader.setCommandLine_": _a("11.0", _D + "vzlinuxbootloader/commandline"),
    "VZEFIBootLoader": _a("13.0", _D + "vzefibootloader"),
    "VZEFIBootLoader.init": _a("13.0", _D + "vzefibootloader/init()"),
    "VZEFIBootLoader.setVariableStore_": _a("13.0", _D + "vzefibootloader/variablestore"),
    "VZEFIVariableStore": _a("13.0", _P + "test_vzefivariablestore.py"),
    "VZEFIVariableStore.initWithURL_": _a("13.0", _D + "vzefivariablestore/init(url:)"),
    "VZEFIVariableStore.initCreatingVariableStoreAtURL_options_error_": _a(
        "13.0", _P + "test_vzefivariablestore.py"
    ),
    "VZGenericPlatformConfiguration": _a("12.0", _P + "test_vzgenericplatformconfiguration.py"),
    "VZGenericPlatformConfiguration.init": _a("12.0", _D + "vzgenericplatformconfiguration"),
    "VZGenericPlatformConfiguration.setMachineIdentifier_": _a(
        "13.0", _D + "vzgenericplatformconfiguration/machineidentifier"
    ),
    "VZGenericMachineIdentifier": _a("13.0", _D + "vzgenericmachineidentifier"),
    "VZGenericMachineIdentifier.init": _a("13.0", _D + "vzgenericmachineidentifier/init()"),
    "VZGenericMachineIdentifier.initWithDataRepresentation_": _a(
        "13.0", _D + "vzgenericmachineidentifier/init(datarepresentation:)"
    ),
    "VZGenericMachineIdentifier.dataRepresentation": _a(
        "13.0", _D + "vzgenericmachineidentifier/datarepresentation"
    ),
    # -- storage ------------------------------------------------------------------------
    "VZDiskImageStorageDeviceAttachment": _a(
        "11.0", _P + "test_vzdiskimagestoragedeviceattachment.py"
    ),
    "VZDiskImageStorageDeviceAttachment"
    ".initWithURL_readOnly_cachingMode_synchronizationMode_error_": _a(
        "12.0", _P + "test_vzdiskimagestoragedeviceattachment.py"
    ),
    "VZDiskImageCachingModeAutomatic": _a(
        "12.0", _P + "test_vzdiskimagestoragedeviceattachment.py"
    ),
    "VZDiskImageCachingModeUncached": _a("12.0", _P + "test_vzdiskimagestoragedeviceattachment.py"),
    "VZDiskImageCachingModeCached": _a("12.0", _P + "test_vzdiskimagestoragedeviceattachment.py"),
    "VZDiskImageSynchronizationModeFull": _a(
        "12.0", _P + "test_vzdiskimagestoragedeviceattachment.py"
    ),
    "VZDiskImageSynchronizationModeNone": _a(
        "12.0", _P + "test_vzdiskimagestoragedeviceattachment.py"
    ),
    "VZVirtioBlockDeviceConfiguration": _a("11.0", _P + "test_vzvirtioblockdeviceconfiguration.py"),
    "VZVirtioBlockDeviceConfiguration.initWithAttachment_": _a(
        "11.0", _D + "vzvirtioblockdeviceconfiguration/init(attachment:)"
    ),
    "VZNVMExpressControllerDeviceConfiguration": _a(
        "14.0", _D + "vznvmexpresscontrollerdeviceconfiguration"
    ),
    "VZNVMExpressControllerDeviceConfiguration.initWithAttachment_": _a(
        "14.0", _D + "vznvmexpresscontrollerdeviceconfiguration/init(attachment:)"
    ),
    "VZUSBMassStorageDeviceConfiguration": _a("13.0", _D + "vzusbmassstoragedeviceconfiguration"),
    "VZUSBMassStorageDeviceConfiguration.initWithAttachment_": _a(
        "13.0", _D + "vzusbmassstoragedeviceconfiguration/init(attachment:)"
    ),
    # -- network ------------------------------------------------------------------------
    "VZVirtioNetworkDeviceConfiguration": _a("11.0", _D + "vzvirtionetworkdeviceconfiguration"),
    "VZVirtioNetworkDeviceConfiguration.init": _a(
        "11.0", _D + "vzvirtionetworkdeviceconfiguration"
    ),
    "VZVirtioNetworkDeviceConfiguration.setAttachment_": _a(
        "11.0", _D + "vznetworkdeviceconfiguration/attachment"
    ),
    "VZVirtioNetworkDeviceConfiguration.setMACAddress_": _a(
        "11.0", _D + "vznetworkdeviceconfiguration/macaddress"
    ),
    "VZNATNetworkDeviceAttachment": _a("11.0", _D + "vznatnetworkdeviceattachment"),
    "VZNATNetworkDeviceAttachment.init": _a("11.0", _D + "vznatnetworkdeviceattachment"),
    "VZBridgedNetworkDeviceAttachment": _a("11.0", _D + "vzbridgednetworkdeviceattachment"),
    "VZBridgedNetworkDeviceAttachment.initWithInterface_": _a(
        "11.0", _D + "vzbridgednetworkdeviceattachment/init(interface:)"
    ),
    "VZBridgedNetworkInterface": _a("11.0", _D + "vzbridgednetworkinterface"),
    "VZBridgedNetworkInterface.networkInterfaces": _a(
        "11.0", _D + "vzbridgednetworkinterface/networkinterfaces"
    ),
    "VZBridgedNetworkInterface.identifier": _a("11.0", _D + "vzbridgednetworkinterface/identifier"),
    "VZMACAddress": _a("11.0", _P + "test_vzmacaddress.py"),
    "VZMACAddress.initWithString_": _a("11.0", _D + "vzmacaddress/init(string:)"),
    # -- display and input --------------------------------------------------------------
    "VZVirtioGraphicsDeviceConfiguration": _a("13.0", _D + "vzvirtiographicsdeviceconfiguration"),
    "VZVirtioGraphicsDeviceConfiguration.init": _a(
        "13.0", _D + "vzvirtiographicsdeviceconfiguration"
    ),
    "VZVirtioGraphicsDeviceConfiguration.setScanouts_": _a(
        "13.0", _D + "vzvirtiographicsdeviceconfiguration/scanouts"
    ),
    "VZVirtioGraphicsScanoutConfiguration": _a("13.0", _D + "vzvirtiographicsscanoutconfiguration"),
    "VZVirtioGraphicsScanoutConfiguration.initWithWidthInPixels_heightInPixels_": _a(
        "13.0", _D + "vzvirtiographicsscanoutconfiguration/init(widthinpixels:heightinpixels:)"
    ),
    "VZUSBKeyboardConfiguration": _a("12.0", _D + "vzusbkeyboardconfiguration"),
    "VZUSBKeyboardConfiguration.init": _a("12.0", _D + "vzusbkeyboardconfiguration"),
    "VZUSBScreenCoordinatePointingDeviceConfiguration": _a(
        "12.0", _D + "vzusbscreencoordinatepointingdeviceconfiguration"
    ),
    "VZUSBScreenCoordinatePointingDeviceConfiguration.init": _a(
        "12.0", _D + "vzusbscreencoordinatepointingdeviceconfiguration"
    ),
    # -- serial console -----------------------------------------------------------------
    "VZVirtioConsoleDeviceSerialPortConfiguration": _a(
        "11.0", _D + "vzvirtioconsoledeviceserialportconfiguration"
    ),
    "VZVirtioConsoleDeviceSerialPortConfiguration.init": _a(
        "11.0", _D + "vzvirtioconsoledeviceserialportconfiguration"
    ),
    "VZVirtioConsoleDeviceSerialPortConfiguration.setAttachment_": _a(
        "11.0", _D + "vzserialportconfiguration/attachment"
    ),
    "VZFileHandleSerialPortAttachment": _a("11.0", _D + "vzfilehandleserialportattachment"),
    "VZFileHandleSerialPortAttachment.initWithFileHandleForReading_fileHandleForWriting_": _a(
        "11.0",
        _D + "vzfilehandleserialportattachment/init(filehandleforreading:filehandleforwriting:)",
    ),
    # -- shared folders -----------------------------------------------------------------
    "VZVirtioFileSystemDeviceConfiguration": _a(
        "12.0", _P + "test_vzvirtiofilesystemdeviceconfiguration.py"
    ),
    "VZVirtioFileSystemDeviceConfiguration.initWithTag_": _a(
        "12.0", _D + "vzvirtiofilesystemdeviceconfiguration/init(tag:)"
    ),
    "VZVirtioFileSystemDeviceConfiguration.validateTag_error_": _a(
        "12.0", _P + "test_vzvirtiofilesystemdeviceconfiguration.py"
    ),
    "VZVirtioFileSystemDeviceConfiguration.setShare_": _a(
        "12.0", _D + "vzvirtiofilesystemdeviceconfiguration/share"
    ),
    "VZSharedDirectory": _a("12.0", _P + "test_vzshareddirectory.py"),
    "VZSharedDirectory.initWithURL_readOnly_": _a("12.0", _P + "test_vzshareddirectory.py"),
    "VZSingleDirectoryShare": _a("12.0", _D + "vzsingledirectoryshare"),
    "VZSingleDirectoryShare.initWithDirectory_": _a(
        "12.0", _D + "vzsingledirectoryshare/init(directory:)"
    ),
    # -- clipboard (SPICE agent on a virtio console port) -------------------------------
    "VZVirtioConsoleDeviceConfiguration": _a("13.0", _D + "vzvirtioconsoledeviceconfiguration"),
    "VZVirtioConsoleDeviceConfiguration.init": _a(
        "13.0", _D + "vzvirtioconsoledeviceconfiguration"
    ),
    "VZVirtioConsoleDeviceConfiguration.ports": _a(
        "13.0", _D + "vzvirtioconsoledeviceconfiguration/ports"
    ),
    "VZVirtioConsolePortConfigurationArray": _a(
        "13.0", _D + "vzvirtioconsoleportconfigurationarray"
    ),
    "VZVirtioConsolePortConfigurationArray.setObject_atIndexedSubscript_": _a(
        "13.0", _D + "vzvirtioconsoleportconfigurationarray/subscript(_:)"
    ),
    "VZVirtioConsolePortConfiguration": _a("13.0", _P + "test_vzvirtioconsoleportconfiguration.py"),
    "VZVirtioConsolePortConfiguration.init": _a("13.0", _D + "vzvirtioconsoleportconfiguration"),
    "VZVirtioConsolePortConfiguration.setName_": _a("13.0", _D + "vzconsoleportconfiguration/name"),
    "VZVirtioConsolePortConfiguration.setAttachment_": _a(
        "13.0", _D + "vzconsoleportconfiguration/attachment"
    ),
    "VZSpiceAgentPortAttachment": _a("13.0", _P + "test_vzspiceagentportattachment.py"),
    "VZSpiceAgentPortAttachment.init": _a("13.0", _D + "vzspiceagentportattachment"),
    "VZSpiceAgentPortAttachment.setSharesClipboard_": _a(
        "13.0", _P + "test_vzspiceagentportattachment.py"
    ),
    "VZSpiceAgentPortAttachment.spiceAgentPortName": _a(
        "13.0", _D + "vzspiceagentportattachment/spiceagentportname"
    ),
    # -- entropy and memory balloon -----------------------------------------------------
    "VZVirtioEntropyDeviceConfiguration": _a("11.0", _D + "vzvirtioentropydeviceconfiguration"),
    "VZVirtioEntropyDeviceConfiguration.init": _a(
        "11.0", _D + "vzvirtioentropydeviceconfiguration"
    ),
    "VZVirtioTraditionalMemoryBalloonDeviceConfiguration": _a(
        "11.0", _D + "vzvirtiotraditionalmemoryballoondeviceconfiguration"
    ),
    "VZVirtioTraditionalMemoryBalloonDeviceConfiguration.init": _a(
        "11.0", _D + "vzvirtiotraditionalmemoryballoondeviceconfiguration"
    ),
    # -- the running machine ------------------------------------------------------------
    "VZVirtualMachine": _a("11.0", _P + "test_vzvirtualmachine.py"),
    "VZVirtualMachine.initWithConfiguration_queue_": _a(
        "11.0", _D + "vzvirtualmachine/init(configuration:queue:)"
    ),
    "VZVirtualMachine.setDelegate_": _a("11.0", _D + "vzvirtualmachine/delegate"),
    "VZVirtualMachine.state": _a("11.0", _P + "test_vzvirtualmachine.py"),
    "VZVirtualMachine.startWithCompletionHandler_": _a("11.0", _P + "test_vzvirtualmachine.py"),
    "VZVirtualMachine.pauseWithCompletionHandler_": _a("11.0", _P + "test_vzvirtualmachine.py"),
    "VZVirtualMachine.resumeWithCompletionHandler_": _a("11.0", _P + "test_vzvirtualmachine.py"),
    "VZVirtualMachine.canRequestStop": _a("11.0", _P + "test_vzvirtualmachine.py"),
    "VZVirtualMachine.requestStopWithError_": _a("11.0", _P + "test_vzvirtualmachine.py"),
    "VZVirtualMachine.canStop": _a("12.0", _P + "test_vzvirtualmachine.py"),
    "VZVirtualMachine.stopWithCompletionHandler_": _a("12.0", _P + "test_vzvirtualmachine.py"),
    "VZVirtualMachine.saveMachineStateToURL_completionHandler_": _a(
        "14.0", _P + "test_vzvirtualmachine.py"
    ),
    "VZVirtualMachine.restoreMachineStateFromURL_completionHandler_": _a(
        "14.0", _P + "test_vzvirtualmachine.py"
    ),
    "VZVirtualMachineDelegate": _a("11.0", _P + "test_vzvirtualmachinedelegate.py"),
    "VZVirtualMachineDelegate.guestDidStopVirtualMachine_": _a(
        "11.0", _D + "vzvirtualmachinedelegate/guestdidstop(_:)"
    ),
    "VZVirtualMachineDelegate.virtualMachine_didStopWithError_": _a(
        "11.0", _D + "vzvirtualmachinedelegate/virtualmachine(_:didstopwitherror:)"
    ),
}

# VZVirtualMachineState values (pyobjc: test_vzvirtualmachine.py test_enums).
STATES: dict[str, tuple[int, Api]] = {
    "VZVirtualMachineStateStopped": (0, _a("11.0", _P + "test_vzvirtualmachine.py")),
    "VZVirtualMachineStateRunning": (1, _a("11.0", _P + "test_vzvirtualmachine.py")),
    "VZVirtualMachineStatePaused": (2, _a("11.0", _P + "test_vzvirtualmachine.py")),
    "VZVirtualMachineStateError": (3, _a("11.0", _P + "test_vzvirtualmachine.py")),
    "VZVirtualMachineStateStarting": (4, _a("11.0", _P + "test_vzvirtualmachine.py")),
    "VZVirtualMachineStatePausing": (5, _a("11.0", _P + "test_vzvirtualmachine.py")),
    "VZVirtualMachineStateResuming": (6, _a("11.0", _P + "test_vzvirtualmachine.py")),
    "VZVirtualMachineStateStopping": (7, _a("12.0", _P + "test_vzvirtualmachine.py")),
    "VZVirtualMachineStateSaving": (8, _a("14.0", _P + "test_vzvirtualmachine.py")),
    "VZVirtualMachineStateRestoring": (9, _a("14.0", _P + "test_vzvirtualmachine.py")),
}

# Constants the window uses, with their values (AppKit's and Foundation's headers; the
# Mac-only tests compare them with PyObjC's). The fake hands these values out.
CONSTANTS: dict[str, tuple[object, Api]] = {
    "NSDefaultRunLoopMode": (
        "kCFRunLoopDefaultMode",
        _a("10.0", "foundation:runloop/mode/default"),
    ),
    "NSEventMaskAny": ((1 << 64) - 1, _a("10.12", "appkit:nsevent/eventtypemask/any")),
    "NSApplicationActivationPolicyRegular": (
        0,
        _a("10.6", "appkit:nsapplication/activationpolicy/regular"),
    ),
    "NSWindowStyleMaskTitled": (1, _a("10.12", "appkit:nswindow/stylemask-swift.struct/titled")),
    "NSWindowStyleMaskClosable": (
        2,
        _a("10.12", "appkit:nswindow/stylemask-swift.struct/closable"),
    ),
    "NSWindowStyleMaskMiniaturizable": (
        4,
        _a("10.12", "appkit:nswindow/stylemask-swift.struct/miniaturizable"),
    ),
    "NSWindowStyleMaskResizable": (
        8,
        _a("10.12", "appkit:nswindow/stylemask-swift.struct/resizable"),
    ),
    "NSBackingStoreBuffered": (2, _a("10.0", "appkit:nswindow/backingstoretype/buffered")),
}

# Used only after checking the host's macOS version (and, for save/restore, the CPU).
GATED = frozenset(
    {
        "VZNVMExpressControllerDeviceConfiguration",
        "VZNVMExpressControllerDeviceConfiguration.initWithAttachment_",
        "VZVirtualMachineConfiguration.validateSaveRestoreSupportWithError_",
        "VZVirtualMachine.saveMachineStateToURL_completionHandler_",
        "VZVirtualMachine.restoreMachineStateFromURL_completionHandler_",
        "VZVirtualMachineStateSaving",
        "VZVirtualMachineStateRestoring",
    }
)

NVME_SINCE = SURFACE["VZNVMExpressControllerDeviceConfiguration"].since
SAVE_RESTORE_SINCE = SURFACE["VZVirtualMachine.saveMachineStateToURL_completionHandler_"].since


def since(name: str) -> tuple[int, int]:
    if name in STATES:
        return STATES[name][1].since
    if name in CONSTANTS:
        return CONSTANTS[name][1].since
    return SURFACE[name].since


def minimum_macos() -> tuple[int, int]:
    """The oldest macOS with every entry the engine needs for any VM (the non-gated ones)."""
    names = [*SURFACE, *STATES, *CONSTANTS]
    return max(since(name) for name in names if name not in GATED)


MINIMUM_MACOS = minimum_macos()


def version_text(version: tuple[int, int]) -> str:
    """(13, 0) -> "13", (13, 5) -> "13.5": as Apple writes macOS versions."""
    return str(version[0]) if version[1] == 0 else f"{version[0]}.{version[1]}"


def reference_url(ref: str) -> str:
    """Where an entry's version is confirmed, as a link."""
    kind, _, rest = ref.partition(":")
    if kind == "pyobjc":
        return (
            "https://github.com/ronaldoussoren/pyobjc/blob/master/"
            f"pyobjc-framework-Virtualization/PyObjCTest/{rest}"
        )
    if kind in ("foundation", "appkit"):
        return f"https://developer.apple.com/documentation/{kind}/{rest}"
    return f"https://developer.apple.com/documentation/virtualization/{rest}"
