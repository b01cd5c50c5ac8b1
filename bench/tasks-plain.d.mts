import type { TaskFunction } from "numerous-tasks";

export declare const benchTickPlain: TaskFunction<[i: number], number>;
export declare const benchBeganPlain: TaskFunction<[], number>;
